WITH poll AS (
  SELECT id FROM polls WHERE id = $2
), voted AS (
  SELECT 1 FROM votes WHERE user_id = $1 AND poll_id = $2
), stored AS (
  INSERT INTO skips (user_id, poll_id)
  SELECT $1, id FROM poll WHERE NOT EXISTS (SELECT 1 FROM voted)
  ON CONFLICT DO NOTHING
  RETURNING poll_id
), seq AS (
  -- A new skip is the user's next answer (migrations/V002__answer_sequence.sql).
  INSERT INTO answer_seqs AS s (user_id, seq)
  SELECT $1, 1 FROM stored
  ON CONFLICT (user_id) DO UPDATE SET seq = s.seq + 1
  RETURNING s.seq
), event AS (
  INSERT INTO outbox (type, payload)
  SELECT 'poll.skipped', jsonb_build_object('pollId', $2::bigint, 'userId', $1::bigint, 'seq', seq.seq) FROM seq
)
SELECT EXISTS (SELECT 1 FROM poll), EXISTS (SELECT 1 FROM voted), (SELECT seq FROM seq)
