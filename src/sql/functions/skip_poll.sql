-- A skip: the poll leaves the user's feed. It takes the same per-user lock as cast_votes(), so
-- a skip and a vote of one user on one poll are ordered: a skip that waited for a vote sees it
-- (and answers already_voted), and every answer's number in the user's sequence follows that
-- order. A repeated skip writes nothing and has no number. Returns whether the poll exists,
-- whether the user voted on it, and the skip's number when it was new.
CREATE OR REPLACE FUNCTION skip_poll(p_user bigint, p_poll bigint)
RETURNS TABLE (poll_exists boolean, voted boolean, answer_seq bigint)
LANGUAGE plpgsql AS $$
BEGIN
  answer_seq := NULL;
  poll_exists := EXISTS (SELECT 1 FROM polls WHERE id = p_poll);
  IF NOT poll_exists THEN
    voted := false;
    RETURN NEXT;
    RETURN;
  END IF;
  PERFORM pg_advisory_xact_lock(p_user);
  -- A statement after the lock: its snapshot includes any vote committed while we waited.
  voted := EXISTS (SELECT 1 FROM votes WHERE user_id = p_user AND poll_id = p_poll);
  IF NOT voted THEN
    INSERT INTO skips (user_id, poll_id) VALUES (p_user, p_poll) ON CONFLICT DO NOTHING;
    IF FOUND THEN
      -- A new skip is the user's next answer (migrations/V002__answer_sequence.sql).
      INSERT INTO answer_seqs AS s (user_id, seq) VALUES (p_user, 1)
        ON CONFLICT (user_id) DO UPDATE SET seq = s.seq + 1
        RETURNING s.seq INTO answer_seq;
      INSERT INTO outbox (type, payload)
      VALUES ('poll.skipped', jsonb_build_object('pollId', p_poll, 'userId', p_user, 'seq', answer_seq));
    END IF;
  END IF;
  RETURN NEXT;
END;
$$;
