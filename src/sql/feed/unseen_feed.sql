SELECT p.id
  FROM polls p
 WHERE ($2::text IS NULL OR p.tags @> ARRAY[$2::text])
   AND p.id < $3
   AND NOT EXISTS (SELECT 1 FROM votes v WHERE v.user_id = $1 AND v.poll_id = p.id)
   AND NOT EXISTS (SELECT 1 FROM skips s WHERE s.user_id = $1 AND s.poll_id = p.id)
 ORDER BY p.id DESC
 LIMIT $4 OFFSET $5
