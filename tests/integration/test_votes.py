"""Votes and skips: the rules, the daily limit, idempotent replays, and what concurrency must not break."""
import datetime
import random
import threading
import time
import uuid

import psycopg2
import pytest

from conftest import PG, parallel, wait_until


# Poll ids start at a random offset in these modules (see conftest.distinct_poll_ids).
pytestmark = pytest.mark.usefixtures("distinct_poll_ids")


def vote(server, token, poll_id, option=0, headers=None, body=None):
    return server.request("POST", f"/api/polls/{poll_id}/vote", {"optionIndex": option} if body is None else body,
                          token=token, headers=headers)


def skip(server, token, poll_id, body=None, headers=None):
    return server.request("POST", f"/api/polls/{poll_id}/skip", {} if body is None else body, token=token,
                          headers=headers)


def stats(server, token, poll_id):
    r = server.request("GET", f"/api/polls/{poll_id}/stats", token=token)
    assert r.status == 200, r
    return r.json


def me(server, token):
    r = server.request("GET", "/api/users/me", token=token)
    assert r.status == 200, r
    return r.json


def snapshot(db, user_id, poll_ids):
    """Everything a vote writes for this user and these polls (not the outbox: the relay empties it)."""
    return (
        db("SELECT poll_id, option_index FROM votes WHERE user_id = %s ORDER BY poll_id", user_id),
        db("SELECT day, count FROM daily_votes WHERE user_id = %s ORDER BY day", user_id),
        db("SELECT poll_id, option_index, sum(votes) FROM poll_option_counts WHERE poll_id = ANY(%s) "
           "GROUP BY 1, 2 ORDER BY 1, 2", list(poll_ids)),
        db("SELECT poll_id FROM skips WHERE user_id = %s ORDER BY poll_id", user_id),
    )


def stored_counts(db, poll_id, n_options):
    rows = dict(db("SELECT option_index, count(*) FROM votes WHERE poll_id = %s GROUP BY 1", poll_id))
    return [rows.get(i, 0) for i in range(n_options)]


def seconds_to_utc_midnight():
    now = datetime.datetime.now(datetime.timezone.utc)
    midnight = (now + datetime.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (midnight - now).total_seconds()


def assert_consistent_stats(s, poll_id, options):
    assert s["pollId"] == poll_id
    assert [o["index"] for o in s["options"]] == list(range(len(options)))
    assert [o["text"] for o in s["options"]] == list(options)
    total = s["totalVotes"]
    assert total == sum(o["votes"] for o in s["options"]), s
    for o in s["options"]:
        expected = 0 if total == 0 else int((o["votes"] * 1000 + total // 2) // total) / 10
        assert o["percentage"] == pytest.approx(expected), s
        assert round(o["percentage"], 1) == o["percentage"], s
    if total:
        assert abs(sum(o["percentage"] for o in s["options"]) - 100) <= 0.05 * len(options) + 1e-9, s


@pytest.fixture(scope="module")
def creator(server):
    return server.register("creator")


@pytest.fixture
def poll(server, creator):
    return server.create_poll(creator.token, options=("Go", "Python", "Rust"))


# ---------------------------------------------------------------- one vote


def test_vote_answers_200_with_stats_and_is_stored_before_the_answer(server, user, poll, db):
    r = vote(server, user.token, poll["id"], 1)
    assert r.status == 200, r
    # Durable: the row is there the moment the answer arrives.
    assert db("SELECT option_index FROM votes WHERE user_id = %s AND poll_id = %s", user.id, poll["id"]) == [(1,)]
    assert r.json["pollId"] == poll["id"]
    assert r.json["optionIndex"] == 1
    assert r.json["votesRemainingToday"] == 99
    s = r.json["stats"]
    assert s["totalVotes"] == 1
    assert [o["votes"] for o in s["options"]] == [0, 1, 0]
    assert_consistent_stats(s, poll["id"], poll["options"])
    assert [o["percentage"] for o in s["options"]] == [0, 100, 0]
    assert db("SELECT count FROM daily_votes WHERE user_id = %s", user.id) == [(1,)]
    assert db("SELECT coalesce(sum(votes), 0) FROM poll_option_counts WHERE poll_id = %s", poll["id"]) == [(1,)]
    profile = me(server, user.token)
    assert profile["votesToday"] == 1 and profile["votesRemainingToday"] == 99
    assert profile["id"] == user.id and "password" not in str(profile).lower()
    assert stats(server, user.token, poll["id"]) == s


def test_me_before_any_vote_shows_the_whole_daily_allowance(server, user):
    profile = me(server, user.token)
    assert profile["votesToday"] == 0
    assert profile["votesRemainingToday"] == 100


@pytest.mark.parametrize("index", [0, 1, 2])
def test_every_option_index_from_0_is_a_valid_vote(server, poll, index, db):
    voter = server.register()
    r = vote(server, voter.token, poll["id"], index)
    assert r.status == 200, r
    assert r.json["optionIndex"] == index
    assert r.json["stats"]["options"][index]["votes"] >= 1
    assert db("SELECT option_index FROM votes WHERE user_id = %s", voter.id) == [(index,)]


@pytest.mark.parametrize("body", [
    {"optionIndex": 3},
    {"optionIndex": -1},
    {"optionIndex": 10 ** 20},
    {"optionIndex": -(10 ** 20)},
    {"optionIndex": 2 ** 31},
    {"optionIndex": 65536},
    {"optionIndex": 1.5},
    {"optionIndex": "1"},
    {"optionIndex": True},
    {"optionIndex": None},
    {"optionIndex": [1]},
    {"optionIndex": {"value": 1}},
    {},
    {"option": 1},
])
def test_vote_with_a_bad_option_is_400_and_writes_nothing(server, user, poll, db, body):
    before = snapshot(db, user.id, [poll["id"]])
    r = vote(server, user.token, poll["id"], body=body)
    assert r.status == 400, r
    assert r.json["error"]["code"] in ("invalid_option", "validation_failed"), r
    assert snapshot(db, user.id, [poll["id"]]) == before
    # The user can still vote properly afterwards.
    assert vote(server, user.token, poll["id"], 0).status == 200


def test_vote_outside_a_two_option_poll_is_invalid_option(server, user, creator, db):
    p = server.create_poll(creator.token, options=("Yes", "No"))
    r = vote(server, user.token, p["id"], 2)
    assert r.status == 400, r
    assert r.json["error"]["code"] in ("invalid_option", "validation_failed")
    assert db("SELECT count(*) FROM votes WHERE poll_id = %s", p["id"]) == [(0,)]


@pytest.mark.parametrize("raw", [b"", b"{", b"[0]", b"0", b"null", b'{"optionIndex": }'])
def test_vote_with_a_malformed_body_is_400_and_writes_nothing(server, user, poll, db, raw):
    before = snapshot(db, user.id, [poll["id"]])
    r = server.request("POST", f"/api/polls/{poll['id']}/vote", raw=raw, token=user.token)
    assert r.status == 400, r
    assert r.json["error"]["code"] in ("invalid_json", "invalid_option", "validation_failed"), r
    assert snapshot(db, user.id, [poll["id"]]) == before


def test_vote_on_an_unknown_poll_is_404_and_writes_nothing(server, user, db):
    missing = db("SELECT coalesce(max(id), 0) + 1000 FROM polls")[0][0]
    before = snapshot(db, user.id, [missing])
    r = vote(server, user.token, missing, 0)
    assert r.status == 404, r
    assert r.json["error"]["code"] == "poll_not_found"
    assert snapshot(db, user.id, [missing]) == before
    assert me(server, user.token)["votesToday"] == 0


@pytest.mark.parametrize("path_id", ["abc", "0", "-3", "1.5", "99999999999999999999999"])
@pytest.mark.parametrize("action", ["vote", "skip"])
def test_vote_or_skip_on_a_non_numeric_poll_id_is_404(server, user, db, path_id, action):
    before = snapshot(db, user.id, [])
    r = server.request("POST", f"/api/polls/{path_id}/{action}", {"optionIndex": 0}, token=user.token)
    assert r.status == 404, r
    assert r.json["error"]["code"] in ("poll_not_found", "not_found"), r
    assert snapshot(db, user.id, []) == before


def test_voting_requires_a_token(server, poll, db):
    before = db("SELECT count(*) FROM votes WHERE poll_id = %s", poll["id"])
    for token in (None, "garbage"):
        r = vote(server, token, poll["id"], 0)
        assert r.status == 401, r
        assert r.json["error"]["code"] == "unauthorized"
        assert r.header("WWW-Authenticate").startswith("Bearer")
    assert db("SELECT count(*) FROM votes WHERE poll_id = %s", poll["id"]) == before


def test_second_vote_is_409_already_voted_and_changes_nothing(server, user, poll, db):
    assert vote(server, user.token, poll["id"], 0).status == 200
    before = snapshot(db, user.id, [poll["id"]])
    for option in (0, 2):
        r = vote(server, user.token, poll["id"], option)
        assert r.status == 409, r
        assert r.json["error"]["code"] == "already_voted"
    assert snapshot(db, user.id, [poll["id"]]) == before
    assert me(server, user.token)["votesToday"] == 1
    g = server.request("GET", f"/api/polls/{poll['id']}", token=user.token)
    assert g.json["myVote"] == 0


def test_user_id_in_the_body_must_be_the_caller(server, user, poll, db):
    other = server.register()
    before = snapshot(db, user.id, [poll["id"]])
    for foreign in (other.id, str(other.id), "abc", 0):
        r = vote(server, user.token, poll["id"], body={"optionIndex": 0, "userId": foreign})
        assert r.status == 403, (foreign, r)
        assert r.json["error"]["code"] == "forbidden"
    r = server.request("POST", f"/api/polls/{poll['id']}/vote?userId={other.id}", {"optionIndex": 0},
                       token=user.token)
    assert r.status == 403, r
    assert snapshot(db, user.id, [poll["id"]]) == before
    assert snapshot(db, other.id, [poll["id"]])[0] == []
    # The caller's own id, as a number or a numeric string, is fine.
    r = vote(server, user.token, poll["id"], body={"optionIndex": 2, "userId": user.id})
    assert r.status == 200, r
    p2 = server.create_poll(user.token)
    r = vote(server, user.token, p2["id"], body={"optionIndex": 1, "userId": str(user.id)})
    assert r.status == 200, r
    assert db("SELECT poll_id, option_index FROM votes WHERE user_id = %s ORDER BY poll_id", user.id) == \
        [(poll["id"], 2), (p2["id"], 1)]


# ---------------------------------------------------------------- concurrency


def test_32_simultaneous_votes_by_one_user_on_one_poll_store_exactly_one(server, user, poll, db, make_server):
    second = make_server(name="second")
    servers = [server, second]
    barrier = threading.Barrier(32)

    def cast(i):
        barrier.wait()
        return vote(servers[i % 2], user.token, poll["id"], i % 3)

    results = parallel(cast, range(32), workers=32)
    statuses = sorted(r.status for r in results)
    assert statuses.count(200) == 1, statuses
    assert statuses.count(409) == 31, statuses
    assert all(r.json["error"]["code"] == "already_voted" for r in results if r.status == 409)
    winner = next(r for r in results if r.status == 200)
    rows = db("SELECT option_index FROM votes WHERE user_id = %s AND poll_id = %s", user.id, poll["id"])
    assert rows == [(winner.json["optionIndex"],)]
    assert db("SELECT count FROM daily_votes WHERE user_id = %s", user.id) == [(1,)]
    assert db("SELECT coalesce(sum(votes), 0) FROM poll_option_counts WHERE poll_id = %s", poll["id"]) == [(1,)]
    assert me(server, user.token)["votesToday"] == 1


def test_150_simultaneous_votes_by_one_user_accept_exactly_the_daily_limit(server, creator, user, db, make_server):
    second = make_server(name="second")
    servers = [server, second]
    polls = parallel(lambda i: server.create_poll(creator.token, title=f"Limit poll {i}", options=("A", "B")),
                     range(150), workers=16)
    ids = [p["id"] for p in polls]
    barrier = threading.Barrier(150)

    def cast(i):
        barrier.wait()
        return vote(servers[i % 2], user.token, ids[i], i % 2)

    results = parallel(cast, range(150), workers=150)
    expected_retry = seconds_to_utc_midnight()
    accepted = [r for r in results if r.status == 200]
    refused = [r for r in results if r.status == 429]
    assert len(accepted) == 100, sorted(r.status for r in results)
    assert len(refused) == 50, sorted(r.status for r in results)
    for r in refused:
        assert r.json["error"]["code"] == "daily_vote_limit_reached", r
        retry = int(r.header("Retry-After"))
        assert abs(retry - expected_retry) <= 5, (retry, expected_retry)
    # Each accepted vote was counted once: the remaining allowances are 99 down to 0.
    assert sorted(r.json["votesRemainingToday"] for r in accepted) == list(range(100))
    accepted_polls = sorted(r.json["pollId"] for r in accepted)
    assert db("SELECT poll_id FROM votes WHERE user_id = %s ORDER BY poll_id", user.id) == \
        [(p,) for p in accepted_polls]
    assert db("SELECT count FROM daily_votes WHERE user_id = %s", user.id) == [(100,)]
    assert db("SELECT coalesce(sum(votes), 0) FROM poll_option_counts WHERE poll_id = ANY(%s)", ids) == [(100,)]
    for s in servers:
        profile = me(s, user.token)
        assert profile["votesToday"] == 100 and profile["votesRemainingToday"] == 0, profile

    # Vote 101 later on is refused the same way and leaves nothing behind.
    fresh = server.create_poll(creator.token)
    before = snapshot(db, user.id, [fresh["id"]])
    r = vote(server, user.token, fresh["id"], 0)
    assert r.status == 429, r
    assert r.json["error"]["code"] == "daily_vote_limit_reached"
    assert abs(int(r.header("Retry-After")) - seconds_to_utc_midnight()) <= 5
    assert snapshot(db, user.id, [fresh["id"]]) == before
    # Skips are unlimited even then.
    assert skip(server, user.token, fresh["id"]).status == 200


def test_stats_after_a_storm_of_votes_equal_the_stored_votes(server, creator, db, make_server):
    second = make_server(name="second")
    servers = [server, second]
    options = ("North", "East", "South", "West")
    p = server.create_poll(creator.token, options=options)
    voters = parallel(lambda _: server.register("storm"), range(60), workers=16)
    barrier = threading.Barrier(60)
    regressions = []

    def cast(i):
        barrier.wait()
        own, other = servers[i % 2], servers[(i + 1) % 2]
        r = vote(own, voters[i].token, p["id"], random.randrange(len(options)))
        if r.status == 200:
            answered = r.json["stats"]["totalVotes"]
            # Nobody, on any instance, may see fewer votes than an answer already given.
            for s in (other, own):
                seen = stats(s, voters[i].token, p["id"])["totalVotes"]
                if seen < answered:
                    regressions.append((i, answered, seen))
        return r

    results = parallel(cast, range(60), workers=60)
    assert [r.status for r in results] == [200] * 60, [r for r in results if r.status != 200]
    assert regressions == []
    for r in results:
        assert_consistent_stats(r.json["stats"], p["id"], options)
        assert r.json["stats"]["options"][r.json["optionIndex"]]["votes"] >= 1
    assert sorted(r.json["stats"]["totalVotes"] for r in results)[-1] <= 60
    stored = stored_counts(db, p["id"], len(options))
    assert sum(stored) == 60
    for s in servers:
        final = stats(s, creator.token, p["id"])
        assert [o["votes"] for o in final["options"]] == stored, (final, stored)
        assert final["totalVotes"] == 60
        assert_consistent_stats(final, p["id"], options)
        g = s.request("GET", f"/api/polls/{p['id']}", token=voters[0].token)
        assert g.json["stats"]["totalVotes"] == 60, g


def test_concurrent_votes_of_many_users_on_many_polls_are_all_counted(server, creator, db, make_server):
    second = make_server(name="second")
    servers = [server, second]
    polls = parallel(lambda i: server.create_poll(creator.token, options=("A", "B", "C")), range(5), workers=5)
    voters = parallel(lambda _: server.register("mixed"), range(12), workers=12)
    jobs = [(v, p, random.randrange(3)) for v in voters for p in polls]
    random.shuffle(jobs)
    results = parallel(lambda j: vote(servers[hash(j[0].id) % 2], j[0].token, j[1]["id"], j[2]), jobs, workers=60)
    assert [r.status for r in results] == [200] * len(jobs)
    for p in polls:
        stored = stored_counts(db, p["id"], 3)
        assert sum(stored) == 12
        for s in servers:
            assert [o["votes"] for o in stats(s, creator.token, p["id"])["options"]] == stored
    for v in voters:
        assert db("SELECT count FROM daily_votes WHERE user_id = %s", v.id) == [(5,)]


# ---------------------------------------------------------------- daily limit and the day boundary


def test_the_daily_limit_resets_on_the_next_utc_day(make_server, creator, db):
    limited = make_server(env={"VOTE_VOTES_DAILY_LIMIT": "3"}, name="limit3")
    u = limited.register("daily")
    polls = [limited.create_poll(creator.token) for _ in range(6)]
    remaining = [vote(limited, u.token, polls[i]["id"], 0) for i in range(3)]
    assert [r.status for r in remaining] == [200, 200, 200], remaining
    assert [r.json["votesRemainingToday"] for r in remaining] == [2, 1, 0]
    assert me(limited, u.token)["votesToday"] == 3
    assert me(limited, u.token)["votesRemainingToday"] == 0

    before = snapshot(db, u.id, [polls[3]["id"]])
    r = vote(limited, u.token, polls[3]["id"], 0)
    assert r.status == 429, r
    assert r.json["error"]["code"] == "daily_vote_limit_reached"
    assert abs(int(r.header("Retry-After")) - seconds_to_utc_midnight()) <= 5
    assert snapshot(db, u.id, [polls[3]["id"]]) == before

    # Midnight passes (for this user): today's count is yesterday's now.
    db("UPDATE daily_votes SET day = day - 1 WHERE user_id = %s", u.id)
    assert me(limited, u.token)["votesToday"] == 0
    assert me(limited, u.token)["votesRemainingToday"] == 3
    r = vote(limited, u.token, polls[3]["id"], 1)
    assert r.status == 200, r
    assert r.json["votesRemainingToday"] == 2
    profile = me(limited, u.token)
    assert profile["votesToday"] == 1 and profile["votesRemainingToday"] == 2
    today = datetime.datetime.now(datetime.timezone.utc).date()
    assert db("SELECT day, count FROM daily_votes WHERE user_id = %s ORDER BY day", u.id) == \
        [(today - datetime.timedelta(days=1), 3), (today, 1)]


def test_skips_do_not_count_toward_the_daily_limit(make_server, creator, db):
    limited = make_server(env={"VOTE_VOTES_DAILY_LIMIT": "3"}, name="limit3")
    u = limited.register("skipper")
    polls = [limited.create_poll(creator.token) for _ in range(9)]
    for p in polls[:5]:
        r = skip(limited, u.token, p["id"])
        assert r.status == 200, r
    profile = me(limited, u.token)
    assert profile["votesToday"] == 0 and profile["votesRemainingToday"] == 3
    results = [vote(limited, u.token, p["id"], 0) for p in polls[5:9]]
    assert [r.status for r in results] == [200, 200, 200, 429], results
    # A poll skipped earlier can be voted on once the limit allows; skipping after the limit is fine.
    db("UPDATE daily_votes SET day = day - 1 WHERE user_id = %s", u.id)
    assert vote(limited, u.token, polls[0]["id"], 1).status == 200
    assert skip(limited, u.token, polls[8]["id"]).status == 200


def test_the_daily_limit_holds_under_concurrency_with_a_small_limit(make_server, creator, db):
    limited = make_server(env={"VOTE_VOTES_DAILY_LIMIT": "3"}, name="limit3")
    u = limited.register("burst")
    polls = parallel(lambda _: limited.create_poll(creator.token), range(20), workers=10)
    barrier = threading.Barrier(20)

    def cast(p):
        barrier.wait()
        return vote(limited, u.token, p["id"], 0)

    results = parallel(cast, polls, workers=20)
    assert sorted(r.status for r in results) == [200] * 3 + [429] * 17
    assert db("SELECT count(*) FROM votes WHERE user_id = %s", u.id) == [(3,)]
    assert db("SELECT count FROM daily_votes WHERE user_id = %s", u.id) == [(3,)]


# ---------------------------------------------------------------- idempotency


def test_idempotent_replay_answers_the_same_and_changes_nothing(server, user, poll, db, make_server):
    key = str(uuid.uuid4())
    first = vote(server, user.token, poll["id"], 2, headers={"Idempotency-Key": key})
    assert first.status == 200, first
    other_poll = server.create_poll(user.token)
    assert vote(server, user.token, other_poll["id"], 0).status == 200
    before = snapshot(db, user.id, [poll["id"], other_poll["id"]])
    second = make_server(name="second")
    for s in (server, second, server):
        again = vote(s, user.token, poll["id"], 2, headers={"Idempotency-Key": key})
        assert again.status == 200, again
        assert again.json == first.json  # the same answer, not the current allowance
        assert again.json["votesRemainingToday"] == 99
    assert snapshot(db, user.id, [poll["id"], other_poll["id"]]) == before
    assert db("SELECT count FROM daily_votes WHERE user_id = %s", user.id) == [(2,)]
    assert db("SELECT count(*) FROM votes WHERE user_id = %s AND poll_id = %s", user.id, poll["id"]) == [(1,)]


def test_idempotent_replay_of_an_error_answers_the_same_error(server, user, poll, db):
    assert vote(server, user.token, poll["id"], 0).status == 200
    key = str(uuid.uuid4())
    first = vote(server, user.token, poll["id"], 1, headers={"Idempotency-Key": key})
    assert first.status == 409, first
    again = vote(server, user.token, poll["id"], 1, headers={"Idempotency-Key": key})
    assert again.status == 409, again
    assert again.json == first.json
    assert db("SELECT option_index FROM votes WHERE user_id = %s AND poll_id = %s", user.id, poll["id"]) == [(0,)]


def test_idempotent_replay_of_a_daily_limit_refusal_keeps_its_retry_after(make_server, creator, db):
    limited = make_server(env={"VOTE_VOTES_DAILY_LIMIT": "1"}, name="limit1")
    u = limited.register("replay429")
    p1, p2 = limited.create_poll(creator.token), limited.create_poll(creator.token)
    assert vote(limited, u.token, p1["id"], 0).status == 200
    key = str(uuid.uuid4())
    first = vote(limited, u.token, p2["id"], 0, headers={"Idempotency-Key": key})
    assert first.status == 429, first
    again = vote(limited, u.token, p2["id"], 0, headers={"Idempotency-Key": key})
    assert again.status == 429, again
    assert again.json == first.json
    assert again.header("Retry-After") is not None, again.headers
    assert abs(int(again.header("Retry-After")) - seconds_to_utc_midnight()) <= 5
    assert db("SELECT count(*) FROM votes WHERE user_id = %s", u.id) == [(1,)]


def test_an_overlong_idempotency_key_is_refused_and_writes_nothing(server, user, poll, db):
    before = snapshot(db, user.id, [poll["id"]])
    r = vote(server, user.token, poll["id"], 0, headers={"Idempotency-Key": "k" * 256})
    assert r.status == 400, r
    assert snapshot(db, user.id, [poll["id"]]) == before
    r = vote(server, user.token, poll["id"], 0, headers={"Idempotency-Key": "k" * 255})
    assert r.status == 200, r


def test_an_idempotency_key_reused_on_another_poll_is_422_and_writes_nothing(server, user, poll, creator, db):
    key = str(uuid.uuid4())
    assert vote(server, user.token, poll["id"], 0, headers={"Idempotency-Key": key}).status == 200
    other = server.create_poll(creator.token)
    before = snapshot(db, user.id, [poll["id"], other["id"]])
    r = vote(server, user.token, other["id"], 0, headers={"Idempotency-Key": key})
    assert r.status == 422, r
    assert r.json["error"]["code"]
    r = skip(server, user.token, other["id"], headers={"Idempotency-Key": key})
    assert r.status == 422, r
    assert snapshot(db, user.id, [poll["id"], other["id"]]) == before
    # Without the key, the vote on the other poll goes through.
    assert vote(server, user.token, other["id"], 0).status == 200


def test_idempotency_keys_belong_to_one_user(server, poll, db):
    a, b = server.register(), server.register()
    key = str(uuid.uuid4())
    ra = vote(server, a.token, poll["id"], 0, headers={"Idempotency-Key": key})
    rb = vote(server, b.token, poll["id"], 1, headers={"Idempotency-Key": key})
    assert ra.status == 200 and rb.status == 200, (ra, rb)
    assert rb.json["optionIndex"] == 1
    assert db("SELECT user_id FROM votes WHERE poll_id = %s AND user_id = ANY(%s) ORDER BY user_id",
              poll["id"], [a.id, b.id]) == sorted([(a.id,), (b.id,)])


def test_simultaneous_requests_with_one_idempotency_key_store_one_vote(server, user, poll, db, make_server):
    second = make_server(name="second")
    servers = [server, second]
    key = str(uuid.uuid4())
    barrier = threading.Barrier(16)

    def cast(i):
        barrier.wait()
        return vote(servers[i % 2], user.token, poll["id"], 1, headers={"Idempotency-Key": key})

    results = parallel(cast, range(16), workers=16)
    assert all(r.status in (200, 409) for r in results), results
    assert any(r.status == 200 for r in results)
    assert db("SELECT option_index FROM votes WHERE user_id = %s AND poll_id = %s", user.id, poll["id"]) == [(1,)]
    assert db("SELECT count FROM daily_votes WHERE user_id = %s", user.id) == [(1,)]
    # Once answered, every replay is the stored answer.
    replay = vote(server, user.token, poll["id"], 1, headers={"Idempotency-Key": key})
    assert replay.status in (200, 409)
    assert vote(second, user.token, poll["id"], 1, headers={"Idempotency-Key": key}).json == replay.json


# ---------------------------------------------------------------- skips


def test_skip_answers_200_and_again_200(server, user, poll, db):
    r = skip(server, user.token, poll["id"])
    assert r.status == 200, r
    assert r.json == {"pollId": poll["id"], "skipped": True}
    assert db("SELECT poll_id FROM skips WHERE user_id = %s", user.id) == [(poll["id"],)]
    again = server.request("POST", f"/api/polls/{poll['id']}/skip", token=user.token)  # empty body
    assert again.status == 200, again
    assert again.json == {"pollId": poll["id"], "skipped": True}
    assert db("SELECT poll_id FROM skips WHERE user_id = %s", user.id) == [(poll["id"],)]
    assert me(server, user.token)["votesToday"] == 0
    assert db("SELECT count(*) FROM daily_votes WHERE user_id = %s", user.id) == [(0,)]


def test_a_skipped_poll_can_still_be_voted_on_by_id(server, user, poll, db):
    assert skip(server, user.token, poll["id"]).status == 200
    g = server.request("GET", f"/api/polls/{poll['id']}", token=user.token)
    assert g.json["myVote"] is None and g.json["stats"]["pollId"] == poll["id"], g
    r = vote(server, user.token, poll["id"], 2)
    assert r.status == 200, r
    assert db("SELECT option_index FROM votes WHERE user_id = %s AND poll_id = %s", user.id, poll["id"]) == [(2,)]
    g = server.request("GET", f"/api/polls/{poll['id']}", token=user.token)
    assert g.status == 200, g
    assert g.json["myVote"] == 2
    assert g.json["stats"]["totalVotes"] >= 1
    assert g.json["stats"]["options"][2]["votes"] >= 1
    assert me(server, user.token)["votesToday"] == 1


def test_skipping_a_voted_poll_is_409_already_voted(server, user, poll, db):
    assert vote(server, user.token, poll["id"], 0).status == 200
    before = snapshot(db, user.id, [poll["id"]])
    r = skip(server, user.token, poll["id"])
    assert r.status == 409, r
    assert r.json["error"]["code"] == "already_voted"
    assert snapshot(db, user.id, [poll["id"]]) == before


def test_skip_of_an_unknown_poll_is_404(server, user, db):
    missing = db("SELECT coalesce(max(id), 0) + 1000 FROM polls")[0][0]
    r = skip(server, user.token, missing)
    assert r.status == 404, r
    assert r.json["error"]["code"] == "poll_not_found"
    assert db("SELECT count(*) FROM skips WHERE user_id = %s", user.id) == [(0,)]


def test_skip_with_another_users_id_is_forbidden(server, user, poll, db):
    other = server.register()
    r = skip(server, user.token, poll["id"], body={"userId": other.id})
    assert r.status == 403, r
    assert r.json["error"]["code"] == "forbidden"
    assert db("SELECT count(*) FROM skips WHERE user_id = ANY(%s)", [user.id, other.id]) == [(0,)]
    r = skip(server, user.token, poll["id"], body={"userId": user.id})
    assert r.status == 200, r


@pytest.mark.parametrize("raw", [b"{", b"not json", b"[]"])
def test_skip_with_a_malformed_body_is_400(server, user, poll, db, raw):
    r = server.request("POST", f"/api/polls/{poll['id']}/skip", raw=raw, token=user.token)
    assert r.status == 400, r
    assert db("SELECT count(*) FROM skips WHERE user_id = %s", user.id) == [(0,)]


def test_simultaneous_skips_and_a_vote_leave_one_vote(server, user, poll, db):
    barrier = threading.Barrier(12)

    def act(i):
        barrier.wait()
        return vote(server, user.token, poll["id"], 1) if i == 0 else skip(server, user.token, poll["id"])

    results = parallel(act, range(12), workers=12)
    assert results[0].status == 200, results[0]
    assert all(r.status in (200, 409) for r in results[1:]), results
    assert db("SELECT option_index FROM votes WHERE user_id = %s AND poll_id = %s", user.id, poll["id"]) == [(1,)]
    assert skip(server, user.token, poll["id"]).status == 409


def test_votes_while_the_database_drops_connections_answer_200_or_503_and_recover(make_isolated_server, isolated):
    """Connections killed under racing votes (groups in flight, one queued behind another): every
    vote gets 200 or 503, never a 5xx of another kind or a hang; every 200 is stored; the server
    then votes normally again, and exits cleanly (sanitizers)."""
    s = make_isolated_server(name="votes-pg-drop")
    users = parallel(lambda _: s.register(), range(8), workers=8)
    polls = [s.create_poll(users[0].token, title=f"Drop {i} {uuid.uuid4().hex[:6]}")["id"] for i in range(16)]
    stop = threading.Event()
    killed = []

    def killer():
        while not stop.is_set():
            rows = isolated.db("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                               "WHERE datname = current_database() AND application_name = 'vote'")
            killed.append(len(rows))
            stop.wait(0.02)

    thread = threading.Thread(target=killer)
    thread.start()
    try:
        jobs = [(u, p) for u in users for p in polls[:15]]
        results = parallel(lambda job: vote(s, job[0].token, job[1]), jobs, workers=16)
    finally:
        stop.set()
        thread.join()
    statuses = sorted({r.status for r in results})
    assert set(statuses) <= {200, 503}, [(r.status, r.json) for r in results if r.status not in (200, 503)][:3]
    assert sum(killed) > 0, "no connection was dropped"
    stored = set(isolated.db("SELECT user_id, poll_id FROM votes WHERE poll_id = ANY(%s)", polls))
    answered = {(u.id, p) for (u, p), r in zip(jobs, results) if r.status == 200}
    assert answered <= stored
    # A 503 may have been stored (its commit may have happened before the connection went), so
    # the stored votes lie between the 200s and all of the votes.
    assert len(stored) <= len(jobs)
    # The last terminations take effect within moments; after them the next vote succeeds.
    time.sleep(0.3)
    r = vote(s, users[1].token, polls[15], 1)
    assert r.status == 200, (r, s.read_log()[-2000:])
    assert r.json["stats"]["totalVotes"] == isolated.db("SELECT count(*) FROM votes WHERE poll_id = %s", polls[15])[0][0]


def test_a_vote_group_rolled_back_to_break_a_deadlock_is_written_again(make_isolated_server, isolated):
    """PostgreSQL breaks a deadlock by rolling back one of its transactions (40P01). When that is a
    vote group, the server sends the group again: the voter gets 200, and the vote is stored and
    counted once."""
    s = make_isolated_server(name="votes-deadlock")
    user = s.register()
    poll = s.create_poll(user.token, title=f"Deadlock {uuid.uuid4().hex[:6]}")["id"]
    # Counter rows for every shard a group may use (votes.counter_shards is 16), so that another
    # transaction can hold them all; rows of 0 change no total.
    isolated.db("INSERT INTO poll_option_counts (poll_id, option_index, shard, votes) "
                "SELECT %s, 0, s, 0 FROM generate_series(0, 63) AS s ON CONFLICT DO NOTHING", poll)
    waiting_groups = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                      "AND application_name = 'vote' AND wait_event_type = 'Lock'")
    blocker = psycopg2.connect(dbname=isolated.database, **PG)
    answer = {}
    voter = threading.Thread(target=lambda: answer.update(r=vote(s, user.token, poll, 0)))
    try:
        cur = blocker.cursor()
        cur.execute("SELECT 1 FROM poll_option_counts WHERE poll_id = %s FOR UPDATE", (poll,))
        voter.start()
        # The group has taken the voter's lock (cast_votes takes it first) and waits for a counter row.
        wait_until(lambda: isolated.db(waiting_groups)[0][0] == 1, 10, interval=0.02,
                   message="the vote group waiting for the counter row")
        # Now this transaction waits for the voter's lock: a deadlock. After deadlock_timeout the
        # transaction that waited first, the group's, is rolled back; this one goes on.
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (user.id,))
        blocker.commit()
    finally:
        blocker.close()
        if voter.is_alive():
            voter.join(30)
    r = answer["r"]
    assert r.status == 200, (r, s.read_log()[-2000:])
    assert r.json["stats"]["totalVotes"] == 1
    assert "vote group retry after 40P01" in s.read_log()
    assert isolated.db("SELECT count(*) FROM votes WHERE poll_id = %s", poll)[0][0] == 1
    assert isolated.db("SELECT sum(votes) FROM poll_option_counts WHERE poll_id = %s", poll)[0][0] == 1
    assert isolated.db("SELECT count FROM daily_votes WHERE user_id = %s", user.id)[0][0] == 1


def test_a_skip_waiting_behind_a_vote_of_the_same_user_sees_it(server, creator, db, poll):
    # Both take the user's lock: held here, the vote waits first and the skip behind it. Once
    # the lock is free, the vote commits and the skip finds it (409), never both accepted.
    u = server.register("racer")
    holder = psycopg2.connect(dbname=db("SELECT current_database()")[0][0], **PG)
    answers = {}
    try:
        with holder.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (u.id,))
            t_vote = threading.Thread(target=lambda: answers.update(vote=vote(server, u.token, poll["id"], 1)))
            t_vote.start()
            wait_until(lambda: db("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                  "AND query LIKE '%%cast_votes%%'")[0][0] >= 1, 10, message="vote waiting on the lock")
            t_skip = threading.Thread(target=lambda: answers.update(skip=skip(server, u.token, poll["id"])))
            t_skip.start()
            time.sleep(0.5)
            assert "skip" not in answers, answers  # the skip waits for the same lock
        holder.commit()
        t_vote.join(20)
        t_skip.join(20)
    finally:
        holder.close()
    assert answers["vote"].status == 200, answers
    assert answers["skip"].status == 409 and answers["skip"].json["error"]["code"] == "already_voted", answers
    assert db("SELECT count(*) FROM skips WHERE user_id = %s", u.id)[0][0] == 0


def test_instances_whose_clocks_differ_count_the_same_day(make_server, creator, db):
    # B's clock is a day ahead. The day of the limit is the database's, so B does not open a
    # fresh day's allowance for a user who spent today's on A.
    # (A's tokens live 3 days, so they are still good by B's clock.)
    a = make_server(env={"VOTE_VOTES_DAILY_LIMIT": "3", "VOTE_JWT_TOKEN_DURATION": "72h"}, name="clock-a")
    b = make_server(env={"VOTE_VOTES_DAILY_LIMIT": "3", "VOTE_SERVER_CLOCK_OFFSET": "24h"}, name="clock-b")
    u = a.register("skewed")
    polls = [a.create_poll(creator.token) for _ in range(4)]
    assert [vote(a, u.token, p["id"]).status for p in polls[:3]] == [200, 200, 200]
    r = vote(b, u.token, polls[3]["id"])
    assert r.status == 429 and r.json["error"]["code"] == "daily_vote_limit_reached", r
    profile = b.request("GET", "/api/users/me", token=u.token).json
    assert profile["votesToday"] == 3 and profile["votesRemainingToday"] == 0, profile
    assert db("SELECT count(*) FROM votes WHERE user_id = %s", u.id)[0][0] == 3
