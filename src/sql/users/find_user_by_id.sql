SELECT u.id, u.username, u.email, to_char(u.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
       u.password_hash, coalesce((SELECT d.count FROM daily_votes d WHERE d.user_id = u.id AND d.day = (now() AT TIME ZONE 'UTC')::date), 0)
  FROM users u WHERE u.id = $1
