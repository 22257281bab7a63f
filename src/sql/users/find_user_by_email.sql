SELECT id, username, email, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), password_hash
  FROM users WHERE lower(email) = lower($1)
