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

-- cast_votes() and the other functions live in src/sql/functions/ and are applied after the
-- numbered migrations whenever their text changes (docs/ARCHITECTURE.md, "SQL").
