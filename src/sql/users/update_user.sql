UPDATE users SET username = coalesce($2, username), email = coalesce($3, email) WHERE id = $1
RETURNING id, username, email, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
