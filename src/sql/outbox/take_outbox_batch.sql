-- The oldest outbox rows no other relay holds, taken out in the relay's open transaction: they
-- are gone for good only when it commits, once the broker has confirmed them. One statement
-- instead of a locking read now and a delete later; the row locks of SKIP LOCKED are still
-- WAL-logged, so each row writes a lock and a delete record either way (pg_waldump).
DELETE FROM outbox
 WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
RETURNING id, event_id::text, type, payload::text, floor(extract(epoch FROM created_at))::bigint
