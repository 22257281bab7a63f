-- pgbench: 20 votes per transaction, as the server's batching would send them (sorted by user,
-- which orders the per-user locks). Random (user, poll) pairs. -D polls=N.
\set shard random(0, 15)
WITH b AS MATERIALIZED (
  SELECT (2000001 + floor(random() * 1000000))::bigint AS u,
         (1 + floor(random() * :polls))::bigint AS p,
         (random() < 0.5)::int AS o
    FROM generate_series(1, 20))
SELECT * FROM cast_votes((SELECT array_agg(u ORDER BY u, p) FROM b), (SELECT array_agg(p ORDER BY u, p) FROM b),
                         (SELECT array_agg(o ORDER BY u, p) FROM b), current_date, 1000000, :shard);
