SELECT id, tags FROM polls WHERE id > $1 ORDER BY id LIMIT $2
