SELECT poll_id FROM votes WHERE user_id = $1 AND poll_id = ANY($2::bigint[])
UNION ALL
SELECT poll_id FROM skips WHERE user_id = $1 AND poll_id = ANY($2::bigint[])
