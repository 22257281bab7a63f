SELECT (SELECT v.option_index FROM votes v WHERE v.user_id = $1 AND v.poll_id = $2),
       EXISTS (SELECT 1 FROM skips s WHERE s.user_id = $1 AND s.poll_id = $2)
