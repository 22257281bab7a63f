-- Each user's answer sequence: how many answers (accepted votes, new skips) the user has
-- written. Bumped in the transaction that writes the answer, so a snapshot that sees seq = n
-- sees exactly the user's answers 1..n. A feed instance that holds the user's answered set
-- complete through n needs no per-poll check while the stored value is still n (FEED.md).
-- Every write to votes or skips goes through cast_votes() or src/sql/votes/skip_poll.sql,
-- which bump it; a row written any other way is still caught by the feed's fallback check
-- only once the sequence moves.
CREATE TABLE answer_seqs (
  user_id bigint PRIMARY KEY,
  seq     bigint NOT NULL
);

-- cast_votes() now works on the whole group at once (a handful of set-based statements instead
-- of five statements per vote) and returns each accepted vote's place in its user's answer
-- sequence. The rules are those of V001: the poll exists and the option is valid; no earlier
-- vote by the user on the poll (in the table or earlier in the group); the day's count stays
-- within p_limit. A vote that fails a rule writes nothing.
DROP FUNCTION cast_votes(bigint[], bigint[], int[], date, int, int);

CREATE FUNCTION cast_votes(p_users bigint[], p_polls bigint[], p_options int[], p_day date, p_limit int,
                           p_shard int)
RETURNS TABLE (ord int, status text, votes_today int, answer_seq bigint)
LANGUAGE plpgsql AS $$
BEGIN
  -- One user's votes are serialised by a transaction-scoped advisory lock on the user id, taken
  -- in user order (so groups never deadlock on them) before anything is read: the statement
  -- below runs with a snapshot taken after the locks, so it sees every earlier vote and day
  -- count of these users, and nobody else writes them until this transaction ends.
  PERFORM pg_advisory_xact_lock(u) FROM (SELECT DISTINCT u FROM unnest(p_users) AS u ORDER BY u) AS locked;

  RETURN QUERY
  WITH ballot AS (
    SELECT i AS ord, p_users[i] AS user_id, p_polls[i] AS poll_id, p_options[i] AS option_index,
           (SELECT cardinality(p.options) FROM polls p WHERE p.id = p_polls[i]) AS n_options
      FROM generate_subscripts(p_users, 1) AS i
  ), valid AS (
    -- Valid ballots, each with the first valid ballot of its (user, poll) in the group.
    SELECT b.ord, b.user_id, b.poll_id, b.option_index,
           min(b.ord) OVER (PARTITION BY b.user_id, b.poll_id) AS first
      FROM ballot b
     WHERE b.n_options IS NOT NULL AND b.option_index >= 0 AND b.option_index < b.n_options
  ), fresh AS (
    -- First ballots on polls the user has not voted on, numbered per user in arrival order.
    SELECT v.ord, v.user_id, v.poll_id, v.option_index,
           row_number() OVER (PARTITION BY v.user_id ORDER BY v.ord) AS n,
           coalesce((SELECT d.count FROM daily_votes d WHERE d.user_id = v.user_id AND d.day = p_day), 0) AS counted
      FROM valid v
     WHERE v.ord = v.first
       AND NOT EXISTS (SELECT 1 FROM votes x WHERE x.user_id = v.user_id AND x.poll_id = v.poll_id)
  ), accepted AS (
    SELECT f.* FROM fresh f WHERE f.counted + f.n <= p_limit
  ), stored AS (
    INSERT INTO votes (user_id, poll_id, option_index)
    SELECT a.user_id, a.poll_id, a.option_index FROM accepted a ORDER BY a.user_id, a.poll_id
  ), days AS (
    INSERT INTO daily_votes AS d (user_id, day, count)
    SELECT a.user_id, p_day, count(*) FROM accepted a GROUP BY a.user_id ORDER BY a.user_id
    ON CONFLICT (user_id, day) DO UPDATE SET count = d.count + excluded.count
  ), seqs AS (
    INSERT INTO answer_seqs AS s (user_id, seq)
    SELECT a.user_id, count(*) FROM accepted a GROUP BY a.user_id ORDER BY a.user_id
    ON CONFLICT (user_id) DO UPDATE SET seq = s.seq + excluded.seq
    RETURNING s.user_id, s.seq
  ), numbered AS (
    -- The group's votes of a user take the last places of that user's sequence, in order.
    SELECT a.ord, a.user_id, a.poll_id, a.option_index, (a.counted + a.n)::int AS today,
           s.seq - count(*) OVER (PARTITION BY a.user_id) + row_number() OVER (PARTITION BY a.user_id ORDER BY a.ord)
             AS seq
      FROM accepted a JOIN seqs s ON s.user_id = a.user_id
  ), counters AS (
    -- Ordered by (poll, option), so concurrent groups never deadlock on counter rows.
    INSERT INTO poll_option_counts AS c (poll_id, option_index, shard, votes)
    SELECT a.poll_id, a.option_index, p_shard, count(*) FROM accepted a GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (poll_id, option_index, shard) DO UPDATE SET votes = c.votes + excluded.votes
  ), events AS (
    INSERT INTO outbox (type, payload)
    SELECT 'vote.cast', jsonb_build_object('pollId', n.poll_id, 'userId', n.user_id, 'optionIndex', n.option_index,
                                           'seq', n.seq)
      FROM numbered n ORDER BY n.ord
  )
  -- Counts are read by the caller after the commit: read here, they would miss groups
  -- committing at the same moment.
  SELECT b.ord,
         CASE WHEN b.n_options IS NULL THEN 'poll_not_found'
              WHEN v.ord IS NULL THEN 'invalid_option'
              WHEN n.ord IS NOT NULL THEN 'accepted'
              -- This ballot or the first of its (user, poll) was new but over the day's limit.
              WHEN f.ord IS NOT NULL AND f.counted + f.n > p_limit THEN 'limit_reached'
              ELSE 'already_voted' END,
         CASE WHEN n.ord IS NOT NULL THEN n.today
              WHEN f.ord IS NOT NULL AND f.counted + f.n > p_limit THEN p_limit END,
         n.seq
    FROM ballot b
    LEFT JOIN valid v ON v.ord = b.ord
    LEFT JOIN fresh f ON f.ord = v.first
    LEFT JOIN numbered n ON n.ord = b.ord
   ORDER BY b.ord;
END;
$$;
