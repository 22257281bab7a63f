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

-- cast_votes() (src/sql/functions/cast_votes.sql) gives each accepted vote the next number of
-- its user's answer sequence. Databases migrated before functions moved out of the numbered
-- migrations created it here, with this signature: the function file replaces it in place.
