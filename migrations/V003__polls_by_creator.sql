-- "My polls" (GET /api/users/me/polls): a creator's polls, newest first, page by page.
CREATE INDEX polls_creator_idx ON polls (creator_id, id DESC);
