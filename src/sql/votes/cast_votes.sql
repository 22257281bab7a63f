SELECT ord, status, votes_today, answer_seq FROM cast_votes($1::bigint[], $2::bigint[], $3::int[], $4::date, $5, $6)
