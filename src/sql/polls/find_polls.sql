SELECT id, title, options, tags, creator_id, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
  FROM polls WHERE id = ANY($1::bigint[])
