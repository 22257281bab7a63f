-- The oldest outbox rows no other relay holds, taken out in the relay's open transaction: they
-- are gone for good only when it commits, once the broker has confirmed them. Deleting them here
-- instead of locking them now and deleting them later writes one WAL record per row, not two.
DELETE FROM outbox
 WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
RETURNING id, event_id::text, type, payload::text, floor(extract(epoch FROM created_at))::bigint
