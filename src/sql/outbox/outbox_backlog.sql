-- Capped at a million rows so a huge backlog does not make the metric expensive; the oldest
-- row is found through the primary key (ids grow with time).
SELECT (SELECT count(*) FROM (SELECT 1 FROM outbox LIMIT 1000000) AS capped),
       coalesce((SELECT extract(epoch FROM now() - created_at) FROM outbox ORDER BY id LIMIT 1), 0)
