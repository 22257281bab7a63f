-- One row per feed request r (in order) or one per answered id of it: the user's answer
-- sequence now, and, only when it is not the one the instance's answered set is complete
-- through ($2), which of the request's ids ($5[$3:$4]) the user has voted on or skipped.
-- The CASE keeps the probes out of the plan for current sets (as a join filter, the planner
-- would apply the comparison only after probing every id). The last column, the newest poll
-- id stored (one backward step of the primary key, computed once per statement), tells the
-- instance whether its feed index misses a poll created elsewhere.
SELECT r.ord, coalesce(a.seq, 0), hit.poll_id, (SELECT coalesce(max(id), 0) FROM polls)
  FROM unnest($1::bigint[], $2::bigint[], $3::int[], $4::int[]) WITH ORDINALITY AS r(user_id, known, first, last, ord)
  LEFT JOIN answer_seqs a ON a.user_id = r.user_id
  LEFT JOIN LATERAL (
    SELECT p.poll_id
      FROM unnest(CASE WHEN coalesce(a.seq, 0) <> r.known THEN ($5::bigint[])[r.first:r.last] END) AS p(poll_id)
     WHERE EXISTS (SELECT 1 FROM votes v WHERE v.user_id = r.user_id AND v.poll_id = p.poll_id)
        OR EXISTS (SELECT 1 FROM skips s WHERE s.user_id = r.user_id AND s.poll_id = p.poll_id)
  ) AS hit ON true
