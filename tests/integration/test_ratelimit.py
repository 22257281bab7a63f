"""Rate limits (API.md "Rate limiting"): a sliding window per user and a burst limit per client
address, shared by all instances through Redis, with local limits while Redis is down.

Servers use the `isolated` Redis database: rate:user:<id> keys of other test sessions (same ids,
other databases) would otherwise eat these users' budgets. The Redis outage test runs last."""
import random
import time
import uuid

import pytest

from conftest import parallel, start_redis, stop_redis, wait_until

LIMIT = 10
WINDOW = 3  # seconds
USER_LIMITS = {"VOTE_RATELIMIT_USER_PER_MINUTE": str(LIMIT), "VOTE_RATELIMIT_USER_WINDOW": f"{WINDOW}s",
               "VOTE_RATELIMIT_IP_PER_SECOND": "100000"}
IP_LIMIT = 5
IP_WINDOW = 2
IP_LIMITS = {"VOTE_RATELIMIT_IP_PER_SECOND": str(IP_LIMIT), "VOTE_RATELIMIT_IP_WINDOW": f"{IP_WINDOW}s",
             "VOTE_RATELIMIT_USER_PER_MINUTE": "100000"}


def request(s, method, path, body=None, token=None, headers=None, source="127.0.0.1"):
    """Server.request from a chosen loopback source address (each is a client address)."""
    return s.request(method, path, body, token=token, headers=headers, source=source)


def fresh_source():
    """A loopback address no earlier request used, so its per-address budget is untouched."""
    return f"127.{random.randint(1, 254)}.{random.randint(0, 255)}.{random.randint(1, 254)}"


def fresh_forwarded():
    return f"198.51.{random.randint(0, 255)}.{random.randint(1, 254)}"


def rate_headers(r):
    return int(r.header("X-RateLimit-Limit")), int(r.header("X-RateLimit-Remaining")), int(r.header("X-RateLimit-Reset"))


def assert_limited(r, limit, window):
    assert r.status == 429, r
    assert r.json["error"]["code"] == "rate_limited", r
    retry = int(r.header("Retry-After"))
    assert 1 <= retry <= window + 1, r.headers
    lim, remaining, reset = rate_headers(r)
    assert (lim, remaining) == (limit, 0), r.headers
    assert time.time() < reset <= time.time() + window + 1, r.headers


def login(s, source, email="nobody@example.com", headers=None):
    return request(s, "POST", "/api/auth/login", {"email": email, "password": "wrong-password"}, headers=headers,
                   source=source)


def test_user_gets_exactly_the_limit_then_429_with_rate_headers(make_isolated_server):
    s = make_isolated_server(USER_LIMITS, name="rl-headers")
    u = s.register()
    results = [s.request("GET", "/api/users/me", token=u.token) for _ in range(LIMIT + 10)]
    assert [r.status for r in results] == [200] * LIMIT + [429] * 10, results
    for i, r in enumerate(results[:LIMIT]):
        lim, remaining, reset = rate_headers(r)
        assert (lim, remaining) == (LIMIT, LIMIT - 1 - i), r.headers
        # When the window frees a request: the first one's time plus the window, in the future.
        assert time.time() < reset <= time.time() + WINDOW + 1, r.headers
    for r in results[LIMIT:]:
        assert_limited(r, LIMIT, WINDOW)


def test_concurrent_requests_of_one_user_never_exceed_the_limit(make_isolated_server):
    s = make_isolated_server(USER_LIMITS, name="rl-concurrent")
    u = s.register()
    results = parallel(lambda _: s.request("GET", "/api/polls?limit=1", token=u.token), range(LIMIT + 20), workers=30)
    assert sorted(r.status for r in results) == [200] * LIMIT + [429] * 20, results
    assert sorted(rate_headers(r)[1] for r in results if r.status == 200) == list(range(LIMIT))


def test_window_slides(make_isolated_server):
    window = 4
    s = make_isolated_server({**USER_LIMITS, "VOTE_RATELIMIT_USER_WINDOW": f"{window}s"}, name="rl-sliding")
    u = s.register()
    t0 = time.time()
    first = [s.request("GET", "/api/users/me", token=u.token).status for _ in range(5)]
    time.sleep(max(0, t0 + window / 2 - time.time()))
    second = [s.request("GET", "/api/users/me", token=u.token).status for _ in range(5)]
    assert first + second == [200] * 10
    refused = s.request("GET", "/api/users/me", token=u.token)
    assert_limited(refused, LIMIT, window)
    # Retry-After says when the oldest request leaves the window.
    assert int(refused.header("Retry-After")) in (window // 2, window // 2 + 1), refused.headers
    # After the first five left the window, exactly five more fit: the second five still count
    # (a fixed window that restarted would accept ten).
    time.sleep(max(0, t0 + window + 0.4 - time.time()))
    third = [s.request("GET", "/api/users/me", token=u.token).status for _ in range(6)]
    assert third == [200] * 5 + [429], third
    assert time.time() < t0 + window * 1.5, "the test ran too slowly to tell a sliding window"


def test_two_instances_share_one_users_budget(make_isolated_server):
    a = make_isolated_server(USER_LIMITS, name="rl-a")
    b = make_isolated_server(USER_LIMITS, name="rl-b")
    u = a.register()
    results = [(a, b)[i % 2].request("GET", "/api/users/me", token=u.token) for i in range(LIMIT + 6)]
    assert [r.status for r in results] == [200] * LIMIT + [429] * 6, results
    assert [rate_headers(r)[1] for r in results[:LIMIT]] == list(range(LIMIT - 1, -1, -1))
    # Concurrently too.
    v = b.register()
    results = parallel(lambda i: (a, b)[i % 2].request("GET", "/api/users/me", token=v.token), range(LIMIT + 10))
    assert sorted(r.status for r in results) == [200] * LIMIT + [429] * 10, results


def test_burst_limit_per_address_on_register_and_login(make_isolated_server):
    # Five Argon2id hashes in a row can take over two seconds under the sanitizers on a busy
    # machine; a longer window keeps the whole burst inside it.
    window = 2 * IP_WINDOW
    s = make_isolated_server({**IP_LIMITS, "VOTE_RATELIMIT_IP_WINDOW": f"{window}s"}, name="rl-ip")
    source = fresh_source()
    name = f"burst_{uuid.uuid4().hex[:10]}"
    answers = [login(s, source) for _ in range(IP_LIMIT - 1)]
    answers.append(request(s, "POST", "/api/auth/register",
                           {"username": name + "a", "email": f"{name}a@example.com", "password": "password123"},
                           source=source))
    assert [r.status for r in answers] == [401] * (IP_LIMIT - 1) + [201], answers
    for i, r in enumerate(answers):
        assert rate_headers(r)[:2] == (IP_LIMIT, IP_LIMIT - 1 - i), r.headers
    refused = request(s, "POST", "/api/auth/register",
                      {"username": name + "b", "email": f"{name}b@example.com", "password": "password123"}, source=source)
    assert_limited(refused, IP_LIMIT, window)
    assert_limited(login(s, source), IP_LIMIT, window)
    # Another address is not affected.
    assert login(s, fresh_source()).status == 401
    # The refused registration created nothing: once the window passed, the name is still free.
    time.sleep(window + 0.2)
    again = request(s, "POST", "/api/auth/register",
                    {"username": name + "b", "email": f"{name}b@example.com", "password": "password123"}, source=source)
    assert again.status == 201, again


def test_every_api_response_carries_rate_headers_and_unauthenticated_calls_count_per_address(make_isolated_server):
    s = make_isolated_server(IP_LIMITS, name="rl-unauth")
    source = fresh_source()
    answers = [request(s, "GET", "/api/polls", source=source) for _ in range(IP_LIMIT)]
    assert [r.status for r in answers] == [401] * IP_LIMIT, answers
    for i, r in enumerate(answers):
        assert r.header("X-RateLimit-Limit") is not None, ("a 401 from /api/ without rate headers", r.headers)
        assert rate_headers(r)[:2] == (IP_LIMIT, IP_LIMIT - 1 - i), r.headers
    # Burst protection holds for calls without a (valid) token too.
    assert_limited(request(s, "GET", "/api/polls", token="forged", source=source), IP_LIMIT, IP_WINDOW)
    assert_limited(login(s, source), IP_LIMIT, IP_WINDOW)


def test_error_answers_of_authenticated_calls_carry_the_user_limit(make_isolated_server):
    s = make_isolated_server(USER_LIMITS, name="rl-errors")
    u = s.register()
    answers = [s.request("GET", "/api/polls/999999999", token=u.token),
               s.request("GET", "/api/polls?limit=0", token=u.token),
               s.request("POST", "/api/polls/999999999/vote", {"optionIndex": 0}, token=u.token)]
    assert [r.status for r in answers] == [404, 400, 404], answers
    assert [rate_headers(r)[:2] for r in answers] == [(LIMIT, LIMIT - 1), (LIMIT, LIMIT - 2), (LIMIT, LIMIT - 3)]


def test_forwarded_for_from_an_untrusted_peer_is_ignored(make_isolated_server):
    s = make_isolated_server(IP_LIMITS, name="rl-untrusted")
    source = fresh_source()
    answers = [login(s, source, headers={"X-Forwarded-For": fresh_forwarded()}) for _ in range(IP_LIMIT)]
    assert [r.status for r in answers] == [401] * IP_LIMIT, answers
    for forwarded in (fresh_forwarded(), f"{fresh_forwarded()}, {fresh_forwarded()}", source):
        assert_limited(login(s, source, headers={"X-Forwarded-For": forwarded}), IP_LIMIT, IP_WINDOW)


def test_forwarded_for_from_a_trusted_proxy_is_the_client_address(make_isolated_server):
    s = make_isolated_server({**IP_LIMITS, "VOTE_SERVER_TRUSTED_PROXIES": "127.0.0.1"}, name="rl-trusted")
    client = fresh_forwarded()
    answers = [login(s, "127.0.0.1", headers={"X-Forwarded-For": client}) for _ in range(IP_LIMIT)]
    assert [r.status for r in answers] == [401] * IP_LIMIT, answers
    assert_limited(login(s, "127.0.0.1", headers={"X-Forwarded-For": client}), IP_LIMIT, IP_WINDOW)
    # The right-most address the proxy did not add itself is the client; what the client wrote
    # to the left of it is not believed.
    assert_limited(login(s, "127.0.0.1", headers={"X-Forwarded-For": f"{fresh_forwarded()}, {client}"}),
                   IP_LIMIT, IP_WINDOW)
    # Another client behind the same proxy has its own budget.
    other = login(s, "127.0.0.1", headers={"X-Forwarded-For": fresh_forwarded()})
    assert other.status == 401, other
    assert rate_headers(other)[:2] == (IP_LIMIT, IP_LIMIT - 1)
    # A peer that is not a trusted proxy cannot claim to be someone else.
    source = fresh_source()
    for _ in range(IP_LIMIT):
        assert login(s, source, headers={"X-Forwarded-For": fresh_forwarded()}).status == 401
    assert_limited(login(s, source, headers={"X-Forwarded-For": fresh_forwarded()}), IP_LIMIT, IP_WINDOW)


def test_a_rejected_request_changes_nothing(make_isolated_server, isolated):
    s = make_isolated_server(USER_LIMITS, name="rl-nochange")
    u = s.register()
    author = s.register()
    poll = s.create_poll(author.token)
    statuses = [s.request("GET", f"/api/polls/{poll['id']}", token=u.token).status for _ in range(LIMIT)]
    assert statuses == [200] * LIMIT
    title = f"Refused {uuid.uuid4().hex[:8]}"
    key = "vote-" + uuid.uuid4().hex
    new_name = f"renamed_{uuid.uuid4().hex[:8]}"
    refused = {
        "vote": s.request("POST", f"/api/polls/{poll['id']}/vote", {"optionIndex": 1}, token=u.token,
                          headers={"Idempotency-Key": key}),
        "skip": s.request("POST", f"/api/polls/{poll['id']}/skip", {}, token=u.token),
        "create": s.request("POST", "/api/polls", {"title": title, "options": ["A", "B"], "tags": ["x"]},
                            token=u.token),
        "rename": s.request("PATCH", "/api/users/me", {"username": new_name}, token=u.token),
    }
    for what, r in refused.items():
        assert r.status == 429 and r.json["error"]["code"] == "rate_limited", (what, r)
    assert isolated.db("SELECT count(*) FROM votes WHERE user_id = %s", u.id) == [(0,)]
    assert isolated.db("SELECT count(*) FROM skips WHERE user_id = %s", u.id) == [(0,)]
    assert isolated.db("SELECT count(*) FROM polls WHERE title = %s", title) == [(0,)]
    assert isolated.db("SELECT username FROM users WHERE id = %s", u.id) == [(u.username,)]

    time.sleep(WINDOW + 0.2)
    view = s.request("GET", f"/api/polls/{poll['id']}", token=u.token)
    assert view.status == 200 and view.json["myVote"] is None and "stats" not in view.json, view
    # The same Idempotency-Key now runs the vote: the refusal was not stored as its answer.
    again = s.request("POST", f"/api/polls/{poll['id']}/vote", {"optionIndex": 1}, token=u.token,
                      headers={"Idempotency-Key": key})
    assert again.status == 200 and again.json["optionIndex"] == 1, again
    assert again.header("Idempotent-Replayed") is None, again.headers
    skipped = s.request("POST", f"/api/polls/{poll['id']}/skip", {}, token=u.token)
    assert skipped.status == 409 and skipped.json["error"]["code"] == "already_voted", skipped
    stats = s.request("GET", f"/api/polls/{poll['id']}/stats", token=u.token)
    assert stats.json["totalVotes"] == 1, stats


@pytest.mark.outage
def test_redis_outage_falls_back_to_local_limits_and_recovers(make_isolated_server, isolated):
    """Runs last in this file: it stops the machine's Redis for a few seconds."""
    a = make_isolated_server(USER_LIMITS, name="rl-outage-a")
    b = make_isolated_server(USER_LIMITS, name="rl-outage-b")
    u, v, w = a.register(), a.register(), a.register()
    poll = a.create_poll(w.token)
    try:
        stop_redis()
        for s in (a, b):
            ready = wait_until(lambda: (lambda r: r if r.json and r.json["status"] == "degraded" else None)(
                s.request("GET", "/readyz")), 10, message=f"{s.name} reporting degraded")
            assert ready.status == 200, ready
            assert ready.json["checks"] == {"postgres": "ok", "redis": "down", "rabbitmq": "ok"}, ready
        # Still served, and still limited, per instance.
        results = [a.request("GET", "/api/users/me", token=u.token) for _ in range(LIMIT + 3)]
        assert [r.status for r in results] == [200] * LIMIT + [429] * 3, results
        assert [rate_headers(r)[1] for r in results[:LIMIT]] == list(range(LIMIT - 1, -1, -1))
        assert_limited(results[-1], LIMIT, WINDOW)
        vote = a.request("POST", f"/api/polls/{poll['id']}/vote", {"optionIndex": 0}, token=v.token)
        assert vote.status == 200, vote
        # Each instance counts on its own while Redis is away.
        assert b.request("GET", "/api/users/me", token=u.token).status == 200
    finally:
        start_redis()
        isolated.claim_redis()
    for s in (a, b):
        ready = wait_until(lambda: (lambda r: r if r.json and r.json["status"] == "ok" else None)(
            s.request("GET", "/readyz")), 15, interval=0.2, message=f"{s.name} ready again")
        assert ready.json["checks"]["redis"] == "ok"
    # Shared again: the two instances split one budget.
    x = b.register()
    results = [(a, b)[i % 2].request("GET", "/api/users/me", token=x.token) for i in range(LIMIT + 4)]
    assert [r.status for r in results] == [200] * LIMIT + [429] * 4, results
