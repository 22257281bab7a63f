-- The load-test data set, in a freshly migrated database (loadtest/run creates it and reuses it
-- while its marker comment matches). psql variables: polls, answered_mid, answered_big.
--
-- users   1: creator of every poll; 2, 3, 4: feed users who answered 0, :answered_mid and
--         :answered_big polls; 1001-1999 voters of `votes`; 10001-19999 voters of `ws`;
--         100001-110000 WebSocket subscribers (ids above have no row: tokens are minted and
--         nothing the load tests call reads the users table).
--         password_hash is not a real hash: these users cannot log in, they use minted tokens.
-- polls   1 .. :polls, id = creation order, 2 to 4 options, one of tag-1 .. tag-50 each and a
--         second tag on every other poll.
-- answers a feed user's answers are the newest 90 % of their count plus 10 % spread evenly
--         below (the shape that makes a naive feed query slow); one in ten is a vote, the rest
--         skips (both exclude a poll from the feed the same way).
\set ON_ERROR_STOP on
SET synchronous_commit = off;
SET maintenance_work_mem = '256MB';

INSERT INTO users (id, username, email, password_hash) OVERRIDING SYSTEM VALUE
SELECT g, 'load-' || g, 'load-' || g || '@load.invalid', 'loadtest-no-login'
  FROM (SELECT generate_series(1, 4) UNION ALL SELECT generate_series(1001, 1999)
        UNION ALL SELECT generate_series(10001, 19999) UNION ALL SELECT generate_series(100001, 110000)) AS s(g);
SELECT setval(pg_get_serial_sequence('users', 'id'), (SELECT max(id) FROM users));

-- One statement; the generated `search` tsvector and the two GIN indexes are most of its time.
INSERT INTO polls (title, options, tags, creator_id, created_at)
SELECT 'Load poll ' || g || ': which ' || (ARRAY['colour', 'city', 'language', 'season', 'drink', 'sport'])[1 + g % 6]
         || ' would you pick this ' || (ARRAY['week', 'month', 'year'])[1 + g % 3] || '?',
       CASE g % 3
         WHEN 0 THEN ARRAY['Yes', 'No']
         WHEN 1 THEN ARRAY['Red', 'Green', 'Blue']
         ELSE ARRAY['Spring', 'Summer', 'Autumn', 'Winter']
       END,
       CASE WHEN g % 2 = 0
         THEN ARRAY['tag-' || (1 + g % 50), 'tag-' || (1 + (g % 50 + 1 + (g / 50) % 48) % 50)]
         ELSE ARRAY['tag-' || (1 + g % 50)]
       END,
       1,
       now() - make_interval(secs => (:polls - g))
  FROM generate_series(1, :polls) AS g;

-- The answers of users 3 and 4.
CREATE TEMP TABLE answers AS
WITH spec(user_id, total) AS (VALUES (3, :answered_mid), (4, :answered_big)),
     shape AS (SELECT user_id, total, total * 9 / 10 AS newest, total - total * 9 / 10 AS spread FROM spec),
     ids AS (
       SELECT user_id, :polls - g AS poll_id FROM shape, generate_series(0, newest - 1) AS g
       UNION ALL
       SELECT user_id, ((:polls - newest) - g * ((:polls - newest) / spread))::bigint
         FROM shape, generate_series(0, spread - 1) AS g WHERE spread > 0
     )
SELECT DISTINCT user_id, poll_id FROM ids WHERE poll_id >= 1;

INSERT INTO votes (user_id, poll_id, option_index)
SELECT user_id, poll_id, 0 FROM answers WHERE poll_id % 10 = 0;
INSERT INTO skips (user_id, poll_id)
SELECT user_id, poll_id FROM answers WHERE poll_id % 10 <> 0;

ANALYZE;
