SELECT route, status, body FROM idempotency_keys WHERE user_id = $1 AND key = $2 AND expires_at > now()
