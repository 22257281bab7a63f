WITH poll AS (
  INSERT INTO polls (title, options, tags, creator_id) VALUES ($1, $2, $3, $4)
  RETURNING id, title, options, tags, creator_id, created_at
), event AS (
  INSERT INTO outbox (type, payload)
  SELECT 'poll.created', jsonb_build_object('pollId', id, 'title', title, 'options', options, 'tags', tags,
                                            'creatorId', creator_id,
                                            'createdAt', to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'))
    FROM poll
)
SELECT id, title, options, tags, creator_id, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
  FROM poll
