SELECT p.id
  FROM polls p
 WHERE p.search @@ websearch_to_tsquery('english', $2)
   AND ($3::text IS NULL OR p.tags @> ARRAY[$3::text])
   AND p.id < $4
   AND NOT EXISTS (SELECT 1 FROM votes v WHERE v.user_id = $1 AND v.poll_id = p.id)
   AND NOT EXISTS (SELECT 1 FROM skips s WHERE s.user_id = $1 AND s.poll_id = p.id)
 ORDER BY p.id DESC
 LIMIT $5 OFFSET $6
