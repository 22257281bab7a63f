SELECT id, event_id::text, type, payload::text, floor(extract(epoch FROM created_at))::bigint
  FROM outbox
 ORDER BY id
 LIMIT $1
   FOR UPDATE SKIP LOCKED
