-- Before every load-test run: forget what earlier runs added (votes of the load-test voters and
-- of pgbench, day counters, unpublished events), so each run starts from the seeded state.
-- Users 1-999 (the creator and the feed users) keep their seeded answers.
\set ON_ERROR_STOP on
DELETE FROM votes WHERE user_id >= 1000;
DELETE FROM skips WHERE user_id >= 1000;
DELETE FROM daily_votes WHERE user_id >= 1000;
DELETE FROM answer_seqs WHERE user_id >= 1000;
TRUNCATE outbox, idempotency_keys;
-- Counters equal the stored votes again (sum over shards; all in shard 0).
TRUNCATE poll_option_counts;
INSERT INTO poll_option_counts (poll_id, option_index, shard, votes)
SELECT poll_id, option_index, 0, count(*) FROM votes GROUP BY poll_id, option_index;
