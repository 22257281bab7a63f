SELECT p.id, p.options,
       (SELECT array_agg(coalesce(s.v, 0) ORDER BY g.i)
          FROM generate_series(0, cardinality(p.options) - 1) AS g(i)
          LEFT JOIN (SELECT c.option_index, sum(c.votes) AS v FROM poll_option_counts c
                      WHERE c.poll_id = p.id GROUP BY c.option_index) s ON s.option_index = g.i)
  FROM polls p WHERE p.id = ANY($1::bigint[])
