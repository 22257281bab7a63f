-- A group of votes in one transaction (the server groups concurrent votes: one commit, one
-- round trip). Per vote: the poll exists and the option is valid; no earlier vote; the day's
-- count is under the limit. A vote that fails a rule leaves nothing behind. Counter and outbox
-- writes come last, ordered by (poll, option), so concurrent groups never deadlock on them.
-- Callers pass the votes sorted by user id, which orders the per-user locks the same way.
-- Each accepted vote takes the next number of its user's answer sequence (one upsert per user
-- of the group); the number goes out with the vote's event and back to the caller.
-- p_day is the UTC day the limit counts; NULL (what the server passes) is the database's
-- current UTC day, so instances whose clocks differ still agree at midnight.
CREATE OR REPLACE FUNCTION cast_votes(p_users bigint[], p_polls bigint[], p_options int[], p_day date, p_limit int,
                           p_shard int)
RETURNS TABLE (ord int, status text, votes_today int, answer_seq bigint)
LANGUAGE plpgsql AS $$
DECLARE
  v_day date := coalesce(p_day, (now() AT TIME ZONE 'UTC')::date);
  n_options int;
  today int;
  acc_ord int[] := '{}';
  acc_today int[] := '{}';
BEGIN
  answer_seq := NULL;
  FOR i IN 1 .. coalesce(array_length(p_users, 1), 0) LOOP
    ord := i;
    votes_today := NULL;
    SELECT cardinality(p.options) INTO n_options FROM polls p WHERE p.id = p_polls[i];
    IF n_options IS NULL THEN
      status := 'poll_not_found';
      RETURN NEXT;
      CONTINUE;
    END IF;
    IF p_options[i] IS NULL OR p_options[i] < 0 OR p_options[i] >= n_options THEN
      status := 'invalid_option';
      RETURN NEXT;
      CONTINUE;
    END IF;
    -- One user's votes are serialised by a transaction-scoped advisory lock on the user id,
    -- taken before any row lock; callers pass votes sorted by user, so batches take these locks
    -- in one order and never deadlock.
    PERFORM pg_advisory_xact_lock(p_users[i]);
    INSERT INTO votes (user_id, poll_id, option_index) VALUES (p_users[i], p_polls[i], p_options[i])
      ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
      status := 'already_voted';
      RETURN NEXT;
      CONTINUE;
    END IF;
    today := NULL;
    IF p_limit > 0 THEN
      INSERT INTO daily_votes AS d (user_id, day, count) VALUES (p_users[i], v_day, 1)
        ON CONFLICT (user_id, day) DO UPDATE SET count = d.count + 1 WHERE d.count < p_limit
        RETURNING d.count INTO today;
    END IF;
    IF today IS NULL THEN
      -- Over the limit: take the vote back; it was never visible to anyone else.
      DELETE FROM votes WHERE user_id = p_users[i] AND poll_id = p_polls[i];
      status := 'limit_reached';
      votes_today := p_limit;
      RETURN NEXT;
      CONTINUE;
    END IF;
    acc_ord := acc_ord || i;
    acc_today := acc_today || today;
  END LOOP;

  IF cardinality(acc_ord) = 0 THEN
    RETURN;
  END IF;

  INSERT INTO poll_option_counts AS c (poll_id, option_index, shard, votes)
  SELECT p_polls[o], p_options[o], p_shard, count(*)
    FROM unnest(acc_ord) AS o
   GROUP BY 1, 2
   ORDER BY 1, 2
  ON CONFLICT (poll_id, option_index, shard) DO UPDATE SET votes = c.votes + excluded.votes;

  -- The group's votes of a user take the last numbers of that user's sequence, in order; the
  -- row lock on answer_seqs orders them with the user's skips. Counts are read by the caller
  -- after the commit: read here, they would miss groups committing at the same moment.
  RETURN QUERY
  WITH seqs AS (
    INSERT INTO answer_seqs AS s (user_id, seq)
    SELECT p_users[o], count(*) FROM unnest(acc_ord) AS o GROUP BY 1 ORDER BY 1
    ON CONFLICT (user_id) DO UPDATE SET seq = s.seq + excluded.seq
    RETURNING s.user_id, s.seq
  ), numbered AS (
    SELECT a.o, a.k, s.seq - count(*) OVER w + row_number() OVER (w ORDER BY a.o) AS seq
      FROM unnest(acc_ord) WITH ORDINALITY AS a(o, k)
      JOIN seqs s ON s.user_id = p_users[a.o]
    WINDOW w AS (PARTITION BY s.user_id)
  ), events AS (
    INSERT INTO outbox (type, payload)
    SELECT 'vote.cast', jsonb_build_object('pollId', p_polls[n.o], 'userId', p_users[n.o],
                                           'optionIndex', p_options[n.o], 'seq', n.seq)
      FROM numbered n ORDER BY n.o
  )
  SELECT n.o::int, 'accepted'::text, acc_today[n.k], n.seq FROM numbered n ORDER BY n.o;
END;
$$;
