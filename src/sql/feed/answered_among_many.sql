SELECT r.user_id, r.poll_id
  FROM unnest($1::bigint[], $2::bigint[]) AS r(user_id, poll_id)
 WHERE EXISTS (SELECT 1 FROM votes v WHERE v.user_id = r.user_id AND v.poll_id = r.poll_id)
    OR EXISTS (SELECT 1 FROM skips s WHERE s.user_id = r.user_id AND s.poll_id = r.poll_id)
