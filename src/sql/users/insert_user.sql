INSERT INTO users (username, email, password_hash) VALUES ($1, $2, $3)
RETURNING id, username, email, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
