SELECT poll_exists, voted, answer_seq FROM skip_poll($1::bigint, $2::bigint)
