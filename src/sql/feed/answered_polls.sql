-- One snapshot: the user's answer sequence and every answer it counts.
SELECT coalesce((SELECT seq FROM answer_seqs WHERE user_id = $1), 0),
       ARRAY(SELECT poll_id FROM votes WHERE user_id = $1 UNION ALL SELECT poll_id FROM skips WHERE user_id = $1)
