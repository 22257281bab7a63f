SELECT poll_id FROM votes WHERE user_id = $1
UNION ALL
SELECT poll_id FROM skips WHERE user_id = $1
