INSERT INTO idempotency_keys (user_id, key, route, status, body, expires_at)
VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))
ON CONFLICT (user_id, key) DO UPDATE SET route = excluded.route, status = excluded.status, body = excluded.body,
  expires_at = excluded.expires_at
  WHERE idempotency_keys.expires_at <= now()
