WITH poll AS (
  SELECT id FROM polls WHERE id = $2
), voted AS (
  SELECT 1 FROM votes WHERE user_id = $1 AND poll_id = $2
), stored AS (
  INSERT INTO skips (user_id, poll_id)
  SELECT $1, id FROM poll WHERE NOT EXISTS (SELECT 1 FROM voted)
  ON CONFLICT DO NOTHING
  RETURNING poll_id
), event AS (
  INSERT INTO outbox (type, payload)
  SELECT 'poll.skipped', jsonb_build_object('pollId', poll_id, 'userId', $1) FROM stored
)
SELECT EXISTS (SELECT 1 FROM poll), EXISTS (SELECT 1 FROM voted)
