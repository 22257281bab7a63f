-- The polls a user voted on, newest poll first (the votes primary key, one partition).
SELECT poll_id, option_index FROM votes WHERE user_id = $1 AND poll_id < $2 ORDER BY poll_id DESC LIMIT $3
