-- pgbench: one vote per transaction, running what the server runs for a group of one vote.
-- loadtest/run fills in the statements from the server's own files, so the two cannot drift
-- apart: @CAST_VOTES@ is src/sql/votes/cast_votes.sql, @POLLS_STATS@ is
-- src/sql/polls/polls_stats.sql (the counts every accepted vote is answered with). Both go out
-- in one round trip, as the server's writer pipelines them; pgbench 15 has no way to end a
-- transaction inside a pipeline, so here the read runs just before the commit instead of just
-- after it (the same work; sent one after the other, in two round trips, the pair ran about a
-- fifth slower). The reference without the read keeps only @CAST_VOTES@, outside a pipeline.
-- loadtest/run substitutes only lines that are exactly a placeholder and its semicolon.
-- Random (user, poll) pairs; a repeated pair is answered 'already_voted', which loadtest/run
-- counts. -D polls=N.
\set u random(2000001, 3000000)
\set p random(1, :polls)
\set o random(0, 1)
\set shard random(0, 15)
\startpipeline
@CAST_VOTES@;
@POLLS_STATS@;
\endpipeline
