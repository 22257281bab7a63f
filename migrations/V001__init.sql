-- Accounts. Uniqueness is case-insensitive and enforced here, so racing registrations
-- of one name produce one row and one unique violation.
CREATE TABLE users (
  id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  username      text        NOT NULL,
  email         text        NOT NULL,
  password_hash text        NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_username_lower_key ON users (lower(username));
CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email));

-- The text that full-text search matches: title and options, English stemming.
CREATE FUNCTION poll_document(title text, options text[]) RETURNS tsvector
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN to_tsvector('english'::regconfig, title || ' ' || array_to_string(options, ' '));

-- Polls never change after creation; ids grow with creation time, so "newest first" is id DESC.
CREATE TABLE polls (
  id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  title      text        NOT NULL,
  options    text[]      NOT NULL,
  tags       text[]      NOT NULL,
  creator_id bigint      NOT NULL REFERENCES users (id),
  created_at timestamptz NOT NULL DEFAULT now(),
  search     tsvector GENERATED ALWAYS AS (poll_document(title, options)) STORED
);
CREATE INDEX polls_search_idx ON polls USING gin (search);
CREATE INDEX polls_tags_idx ON polls USING gin (tags);

-- One vote per user and poll, ever: the primary key is the rule. Partitioned by a hash of
-- user_id, which keeps that key unique and prepares sharding by user. No foreign key to polls:
-- it would take a shared lock on a hot poll's row for every vote (cast_votes checks the poll).
CREATE TABLE votes (
  user_id      bigint      NOT NULL,
  poll_id      bigint      NOT NULL,
  option_index smallint    NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (user_id, poll_id)
) PARTITION BY HASH (user_id);
CREATE TABLE votes_p0 PARTITION OF votes FOR VALUES WITH (MODULUS 8, REMAINDER 0);
CREATE TABLE votes_p1 PARTITION OF votes FOR VALUES WITH (MODULUS 8, REMAINDER 1);
CREATE TABLE votes_p2 PARTITION OF votes FOR VALUES WITH (MODULUS 8, REMAINDER 2);
CREATE TABLE votes_p3 PARTITION OF votes FOR VALUES WITH (MODULUS 8, REMAINDER 3);
CREATE TABLE votes_p4 PARTITION OF votes FOR VALUES WITH (MODULUS 8, REMAINDER 4);
CREATE TABLE votes_p5 PARTITION OF votes FOR VALUES WITH (MODULUS 8, REMAINDER 5);
CREATE TABLE votes_p6 PARTITION OF votes FOR VALUES WITH (MODULUS 8, REMAINDER 6);
CREATE TABLE votes_p7 PARTITION OF votes FOR VALUES WITH (MODULUS 8, REMAINDER 7);

CREATE TABLE skips (
  user_id    bigint      NOT NULL,
  poll_id    bigint      NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (user_id, poll_id)
);

-- Accepted votes per user and UTC day.
CREATE TABLE daily_votes (
  user_id bigint  NOT NULL,
  day     date    NOT NULL,
  count   integer NOT NULL,
  PRIMARY KEY (user_id, day)
);

-- Each option's counter is spread over shards so concurrent votes on a hot poll do not queue
-- behind one row; totals are the sum over shards and always equal the stored votes.
CREATE TABLE poll_option_counts (
  poll_id      bigint   NOT NULL,
  option_index smallint NOT NULL,
  shard        smallint NOT NULL,
  votes        bigint   NOT NULL,
  PRIMARY KEY (poll_id, option_index, shard)
);

-- Events written in the same transaction as the change; the relay publishes and deletes them.
CREATE TABLE outbox (
  id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  event_id   uuid        NOT NULL DEFAULT gen_random_uuid(),
  type       text        NOT NULL,
  payload    jsonb       NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

-- Stored answers for requests with an Idempotency-Key.
CREATE TABLE idempotency_keys (
  user_id    bigint      NOT NULL,
  key        text        NOT NULL,
  route      text        NOT NULL,
  status     integer     NOT NULL,
  body       text        NOT NULL,
  expires_at timestamptz NOT NULL,
  PRIMARY KEY (user_id, key)
);
CREATE INDEX idempotency_keys_expires_idx ON idempotency_keys (expires_at);

-- A batch of votes in one transaction (the server groups concurrent votes: one commit, one
-- round trip). Per vote: the poll exists and the option is valid; no earlier vote; the day's
-- count is under the limit. A vote that fails a rule leaves nothing behind. Counter and outbox
-- writes come last, ordered by (poll, option), so concurrent batches never deadlock on them.
-- Callers pass the votes sorted by user id, which orders the per-user locks the same way.
CREATE FUNCTION cast_votes(p_users bigint[], p_polls bigint[], p_options int[], p_day date, p_limit int,
                           p_shard int)
RETURNS TABLE (ord int, status text, votes_today int)
LANGUAGE plpgsql AS $$
DECLARE
  n_options int;
  today int;
  acc_ord int[] := '{}';
  acc_today int[] := '{}';
  k int;
BEGIN
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
      INSERT INTO daily_votes AS d (user_id, day, count) VALUES (p_users[i], p_day, 1)
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

  INSERT INTO outbox (type, payload)
  SELECT 'vote.cast', jsonb_build_object('pollId', p_polls[o], 'userId', p_users[o], 'optionIndex', p_options[o])
    FROM unnest(acc_ord) AS o;

  -- Counts are read by the caller after the commit: read here, they would miss groups
  -- committing at the same moment.
  FOR k IN 1 .. cardinality(acc_ord) LOOP
    ord := acc_ord[k];
    status := 'accepted';
    votes_today := acc_today[k];
    RETURN NEXT;
  END LOOP;
END;
$$;
