-- A creator's polls, newest first, with the creator's own vote on each (or NULL).
SELECT p.id, v.option_index
  FROM polls p
  LEFT JOIN votes v ON v.user_id = $1 AND v.poll_id = p.id
 WHERE p.creator_id = $1 AND p.id < $2
 ORDER BY p.id DESC
 LIMIT $3
