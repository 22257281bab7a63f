-- pgbench: one vote per transaction, the statement the server runs for a batch of one
-- (src/sql/votes/cast_votes.sql). Random (user, poll) pairs; a repeated pair is answered
-- 'already_voted', which loadtest/run counts. -D polls=N.
\set u random(2000001, 3000000)
\set p random(1, :polls)
\set o random(0, 1)
\set shard random(0, 15)
SELECT * FROM cast_votes(ARRAY[:u]::bigint[], ARRAY[:p]::bigint[], ARRAY[:o]::int[], current_date, 1000000, :shard);
