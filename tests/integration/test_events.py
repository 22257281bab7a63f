"""Events (API.md "Real time", docs/EVENTS.md): WebSocket pushes across instances, the outbox
across RabbitMQ outages and crashes, dead letters, hot polls.

Servers run on the `isolated` database, vhost and Redis database: events of other test sessions
(same ids, other databases) never reach them and theirs never reach others. The tests that stop
RabbitMQ come last; they stop only the RabbitMQ application, for a few seconds."""
import json
import signal
import time
import uuid

import pika
import pytest
import websocket

from conftest import (RABBITMQ_PASSWORD, RABBITMQ_PORT, RABBITMQ_USER, metric, parallel, start_rabbitmq, stop_rabbitmq,
                      wait_until)

# Reconnect quickly after the broker returns, so the outage tests stay short.
FAST = {"VOTE_RABBITMQ_RECONNECT_INTERVAL": "300ms"}


class Ws:
    """A WebSocket client that reads JSON messages with deadlines."""

    def __init__(self, server, token, via_header=False):
        url = f"ws://127.0.0.1:{server.port}/api/ws"
        if via_header:
            self.ws = websocket.create_connection(url, timeout=5, header=[f"Authorization: Bearer {token}"])
        else:
            self.ws = websocket.create_connection(f"{url}?token={token}", timeout=5)
        self.seen = []

    def send(self, message):
        self.ws.send(json.dumps(message))

    def next(self, timeout):
        self.ws.settimeout(max(timeout, 0.01))
        try:
            message = json.loads(self.ws.recv())
        except websocket.WebSocketTimeoutException:
            return None
        self.seen.append(message)
        return message

    def wait_for(self, predicate, timeout, what="message"):
        deadline = time.time() + timeout
        while time.time() < deadline:
            message = self.next(deadline - time.time())
            if message is not None and predicate(message):
                return message
        raise AssertionError(f"no {what} within {timeout}s; got {self.seen[-10:]}")

    def subscribe(self, poll_ids):
        self.send({"type": "subscribe", "pollIds": poll_ids})
        ack = self.wait_for(lambda m: m.get("type") == "subscribed", 5, "subscribed ack")
        assert sorted(ack["pollIds"]) == sorted(poll_ids), ack
        return ack

    def quiet_for(self, seconds, predicate):
        """Asserts that no message matching predicate arrives for `seconds`."""
        deadline = time.time() + seconds
        while time.time() < deadline:
            message = self.next(deadline - time.time())
            assert message is None or not predicate(message), f"unexpected {message}"

    def close(self):
        self.ws.close()


def stats_of(poll_id, total=None):
    def match(m):
        return (m.get("type") == "stats" and m["stats"]["pollId"] == poll_id
                and (total is None or m["stats"]["totalVotes"] == total))
    return match


def vote(s, token, poll_id, option=0):
    r = s.request("POST", f"/api/polls/{poll_id}/vote", {"optionIndex": option}, token=token)
    assert r.status == 200, r
    return r.json


def outbox_rows(isolated, poll_id=None):
    if poll_id is None:
        return isolated.db("SELECT count(*) FROM outbox")[0][0]
    return isolated.db("SELECT count(*) FROM outbox WHERE (payload->>'pollId')::bigint = %s", poll_id)[0][0]


def readiness(s, status):
    return wait_until(lambda: (lambda r: r if r.json and r.json["status"] == status else None)(s.request("GET", "/readyz")),
                      15, interval=0.1, message=f"{s.name} /readyz {status}")


def amqp(isolated):
    params = pika.ConnectionParameters(host="127.0.0.1", port=RABBITMQ_PORT, virtual_host=isolated.vhost,
                                       credentials=pika.PlainCredentials(RABBITMQ_USER, RABBITMQ_PASSWORD),
                                       connection_attempts=3)
    return pika.BlockingConnection(params)


def queue_messages(isolated, queue):
    """Messages ready in a queue of the isolated vhost, or None while it does not exist."""
    try:
        conn = amqp(isolated)
    except pika.exceptions.AMQPError:
        return None
    try:
        return conn.channel().queue_declare(queue, passive=True).method.message_count
    except pika.exceptions.ChannelClosedByBroker:
        return None
    finally:
        if conn.is_open:
            conn.close()


def test_vote_on_one_instance_reaches_a_subscriber_on_another_within_a_second(make_isolated_server):
    a = make_isolated_server(name="ev-a")
    b = make_isolated_server(name="ev-b")
    author, v1, v2 = a.register(), a.register(), a.register()
    poll = a.create_poll(author.token, options=("Red", "Green", "Blue"))
    on_b = Ws(b, author.token)
    on_a = Ws(a, v1.token, via_header=True)
    try:
        on_b.subscribe([poll["id"]])
        on_a.subscribe([poll["id"]])
        started = time.time()
        vote(a, v1.token, poll["id"], 1)
        pushed = on_b.wait_for(stats_of(poll["id"], 1), 1.0, "stats push on B")
        assert time.time() - started < 1.0
        assert pushed["stats"]["options"] == [
            {"index": 0, "text": "Red", "votes": 0, "percentage": 0},
            {"index": 1, "text": "Green", "votes": 1, "percentage": 100},
            {"index": 2, "text": "Blue", "votes": 0, "percentage": 0}], pushed
        on_a.wait_for(stats_of(poll["id"], 1), 1.0, "stats push on A")

        started = time.time()
        vote(b, v2.token, poll["id"], 2)
        pushed = on_b.wait_for(stats_of(poll["id"], 2), 1.0, "second stats push on B")
        assert [o["percentage"] for o in pushed["stats"]["options"]] == [0, 50, 50], pushed
        on_a.wait_for(stats_of(poll["id"], 2), 1.0, "second stats push on A")

        # After unsubscribing, no more pushes for that poll.
        on_b.send({"type": "unsubscribe", "pollIds": [poll["id"]]})
        on_b.wait_for(lambda m: m.get("type") == "unsubscribed" and m["pollIds"] == [poll["id"]], 5, "unsubscribed ack")
        vote(a, author.token, poll["id"], 0)
        on_a.wait_for(stats_of(poll["id"], 3), 1.0, "third stats push on A")
        on_b.quiet_for(0.5, stats_of(poll["id"]))
    finally:
        on_a.close()
        on_b.close()


def test_many_votes_are_coalesced_and_end_at_the_final_count(make_isolated_server):
    a = make_isolated_server(name="ev-burst-a")
    b = make_isolated_server(name="ev-burst-b")
    voters = parallel(lambda i: (a, b)[i % 2].register(), range(20), workers=8)
    poll = a.create_poll(voters[0].token)
    ws = Ws(b, voters[0].token)
    try:
        ws.subscribe([poll["id"]])
        results = parallel(lambda i: (a, b)[i % 2].request("POST", f"/api/polls/{poll['id']}/vote",
                                                           {"optionIndex": i % 3}, token=voters[i].token),
                           range(20), workers=20)
        assert [r.status for r in results] == [200] * 20, results
        final = ws.wait_for(stats_of(poll["id"], 20), 3, "the final count")
        assert [o["votes"] for o in final["stats"]["options"]] == [7, 7, 6]
        pushes = [m for m in ws.seen if stats_of(poll["id"])(m)]
        totals = [m["stats"]["totalVotes"] for m in pushes]
        assert totals == sorted(totals), f"counts went backwards: {totals}"
        assert len(pushes) < 20, f"{len(pushes)} pushes for 20 votes: not coalesced"
    finally:
        if ws is not None:
            ws.close()


def test_poll_created_is_pushed_to_connected_clients_of_every_instance(make_isolated_server):
    a = make_isolated_server(name="ev-created-a")
    b = make_isolated_server(name="ev-created-b")
    u, watcher = a.register(), b.register()
    on_a, on_b = Ws(a, watcher.token), Ws(b, watcher.token)
    try:
        title = f"Created {uuid.uuid4().hex[:8]}"
        poll = a.create_poll(u.token, title=title, options=("Yes", "No"), tags=("news", "live"))
        for ws in (on_a, on_b):
            pushed = ws.wait_for(lambda m: m.get("type") == "poll_created" and m["poll"]["id"] == poll["id"], 2,
                                 "poll_created")
            p = pushed["poll"]
            assert (p["title"], p["options"], sorted(p["tags"]), p["creatorId"]) == \
                (title, ["Yes", "No"], ["live", "news"], u.id), pushed
            assert p["createdAt"] == poll["createdAt"], (p, poll)
    finally:
        on_a.close()
        on_b.close()


@pytest.mark.parametrize("token", [None, "", "not-a-jwt",
                                   "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLXRoYXQtaXMtd3Jvbmc"])
def test_websocket_without_a_valid_token_is_refused(make_isolated_server, token):
    s = make_isolated_server(name="ev-unauth")
    url = f"ws://127.0.0.1:{s.port}/api/ws" + (f"?token={token}" if token is not None else "")
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(url, timeout=5)
    assert refused.value.status_code == 401
    # A plain HTTP request to the endpoint: the error body of the contract.
    r = s.request("GET", "/api/ws" + (f"?token={token}" if token is not None else ""),
                  headers={"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                           "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
    assert r.status == 401 and r.json["error"]["code"] == "unauthorized", r
    assert (r.header("WWW-Authenticate") or "").startswith("Bearer"), r.headers


def test_hot_polls_lists_the_most_voted_polls(make_isolated_server, isolated):
    a = make_isolated_server(name="ev-hot-a")
    b = make_isolated_server(name="ev-hot-b")
    # Earlier tests' votes are counted first (published, consumed), then forgotten: this ranking
    # holds only this test's polls.
    wait_until(lambda: outbox_rows(isolated) == 0 and queue_messages(isolated, "vote.analytics") == 0, 10,
               interval=0.1, message="earlier votes counted")
    r = isolated.redis()
    for key in r.scan_iter("poll:stats:hot*"):
        r.delete(key)
    users = parallel(lambda i: (a, b)[i % 2].register(), range(7), workers=7)
    x, y, z = (a.create_poll(users[0].token, title=f"Hot {n} {uuid.uuid4().hex[:6]}") for n in "xyz")
    plan = [(x, 7), (y, 5), (z, 3)]
    jobs = [(poll["id"], i) for poll, n in plan for i in range(n)]
    results = parallel(lambda job: (a, b)[job[1] % 2].request("POST", f"/api/polls/{job[0]}/vote",
                                                              {"optionIndex": 0}, token=users[job[1]].token), jobs)
    assert [res.status for res in results] == [200] * len(jobs), results
    expected = [x["id"], y["id"], z["id"]]

    def top3():
        resp = b.request("GET", "/api/polls/hot", token=users[0].token)
        assert resp.status == 200, resp
        ids = [p["id"] for p in resp.json["polls"]]
        return resp.json if ids[:3] == expected else None

    body = wait_until(top3, 20, interval=0.3, message="hot polls ranking x, y, z")
    assert body["polls"][0]["title"] == x["title"] and body["polls"][0]["options"] == x["options"]
    two = a.request("GET", "/api/polls/hot?limit=2", token=users[1].token)
    assert two.status == 200 and [p["id"] for p in two.json["polls"]] == expected[:2], two
    bad = a.request("GET", "/api/polls/hot?limit=0", token=users[1].token)
    assert bad.status == 400 and bad.json["error"]["code"] == "validation_failed", bad
    assert a.request("GET", "/api/polls/hot").status == 401


def test_votes_older_than_an_hour_leave_the_hot_set(make_isolated_server, isolated):
    make_isolated_server(name="ev-hot-window")
    r = isolated.redis()
    now_minute = int(time.time()) // 60
    old, recent = now_minute - 61, now_minute - 5
    # An hour-old minute and a recent one, as the analytics consumer would have left them, with
    # the window still starting at the old minute.
    r.delete("poll:stats:hot")
    r.zadd(f"poll:stats:hot:{old}", {"900001": 5, "900002": 2})
    r.zadd(f"poll:stats:hot:{recent}", {"900002": 3})
    r.zadd("poll:stats:hot", {"900001": 5, "900002": 5})
    r.set("poll:stats:hot:oldest", old)
    try:
        wait_until(lambda: r.zrange("poll:stats:hot", 0, -1, withscores=True) == [(b"900002", 3.0)], 10,
                   interval=0.2, message="the old minute taken out of poll:stats:hot")
        assert int(r.get("poll:stats:hot:oldest")) in (now_minute - 59, now_minute - 58)  # a minute may turn
        assert not r.exists(f"poll:stats:hot:{old}")
        assert r.zscore(f"poll:stats:hot:{recent}", "900002") == 3.0
    finally:
        r.delete(f"poll:stats:hot:{recent}")
        r.zrem("poll:stats:hot", "900002")


def test_undecodable_message_goes_to_the_error_queue(make_isolated_server, isolated):
    make_isolated_server(name="ev-poison")
    wait_until(lambda: queue_messages(isolated, "events.errors") is not None, 10, message="topology declared")
    before = queue_messages(isolated, "events.errors")
    conn = amqp(isolated)
    try:
        ch = conn.channel()
        ch.basic_publish("vote.events", "vote.cast", b"{not json",
                         pika.BasicProperties(content_type="application/json", delivery_mode=2,
                                              message_id="poison-" + uuid.uuid4().hex))
        wait_until(lambda: queue_messages(isolated, "events.errors") == before + 1, 10, interval=0.2,
                   message="the poison message in events.errors")
        method, props, body = ch.basic_get("events.errors", auto_ack=True)
        assert body == b"{not json"
        death = props.headers["x-death"][0]
        assert (death["queue"], death["reason"]) == ("vote.analytics", "rejected"), props.headers
    finally:
        conn.close()


def test_message_that_keeps_failing_goes_to_the_error_queue_after_three_attempts(make_isolated_server, isolated):
    """A vote.cast whose minute bucket in Redis has the wrong type: every attempt fails."""
    s = make_isolated_server(name="ev-retry")
    wait_until(lambda: queue_messages(isolated, "events.errors") is not None, 10, message="topology declared")
    before = queue_messages(isolated, "events.errors")
    cast_at = int(time.time()) - 120  # two minutes ago: no live vote of this test run lands there
    bucket = f"poll:stats:hot:{cast_at // 60}"
    r = isolated.redis()
    r.set(bucket, "not a sorted set")
    event_id = str(uuid.uuid4())
    conn = amqp(isolated)
    try:
        ch = conn.channel()
        body = json.dumps({"id": event_id, "type": "vote.cast", "payload": {"pollId": 1, "userId": 1, "optionIndex": 0}})
        ch.basic_publish("vote.events", "vote.cast", body.encode(),
                         pika.BasicProperties(content_type="application/json", delivery_mode=2, message_id=event_id,
                                              type="vote.cast", timestamp=cast_at))
        wait_until(lambda: queue_messages(isolated, "events.errors") == before + 1, 15, interval=0.2,
                   message="the failing message in events.errors")
        _, props, got = ch.basic_get("events.errors", auto_ack=True)
        assert json.loads(got)["id"] == event_id
        # First delivery, then two retries: the third failure dead-letters it.
        assert props.headers["x-attempts"] == 2, props.headers
        assert props.headers["x-death"][0]["queue"] == "vote.analytics", props.headers
        assert queue_messages(isolated, "vote.analytics") == 0
    finally:
        conn.close()
        r.delete(bucket)
    assert s.request("GET", "/healthz").status == 200


@pytest.mark.outage
def test_votes_during_a_rabbitmq_outage_are_delivered_once_after_it(make_isolated_server, isolated):
    """Runs late: stops the machine's RabbitMQ application for a few seconds."""
    s = make_isolated_server(FAST, name="ev-outage")
    voters = parallel(lambda _: s.register(), range(12), workers=6)
    poll = s.create_poll(voters[0].token)
    ws = Ws(s, voters[0].token)
    ws.subscribe([poll["id"]])
    consumed_before = metric(s, "vote_events_consumed_total", type="vote.cast")
    try:
        stop_rabbitmq()
        ready = readiness(s, "degraded")
        assert ready.status == 200 and ready.json["checks"]["rabbitmq"] == "down", ready
        results = parallel(lambda u: s.request("POST", f"/api/polls/{poll['id']}/vote", {"optionIndex": 1},
                                               token=u.token), voters)
        assert [r.status for r in results] == [200] * len(voters), results
        # Committed, waiting in the outbox; nothing reached the subscriber.
        assert outbox_rows(isolated, poll["id"]) == len(voters)
        ws.quiet_for(0.3, stats_of(poll["id"]))
    finally:
        start_rabbitmq()
    readiness(s, "ok")
    wait_until(lambda: outbox_rows(isolated) == 0, 20, interval=0.1, message="the outbox drained")
    ws.wait_for(stats_of(poll["id"], len(voters)), 10, "the final count after the outage")
    wait_until(lambda: metric(s, "vote_events_consumed_total", type="vote.cast") >= consumed_before + len(voters),
               10, message="every event consumed")
    time.sleep(0.5)
    # Every event reached the fan-out exactly once.
    assert metric(s, "vote_events_consumed_total", type="vote.cast") == consumed_before + len(voters)
    ws.close()


@pytest.mark.outage
def test_events_of_a_server_killed_before_publishing_are_published_after_restart(make_isolated_server, isolated):
    """Runs last: RabbitMQ is stopped so the events stay in the outbox, then the server is SIGKILLed."""
    first = make_isolated_server(FAST, name="ev-killed")
    voters = parallel(lambda _: first.register(), range(8), workers=8)
    poll = first.create_poll(voters[0].token)
    wait_until(lambda: outbox_rows(isolated) == 0, 10, message="the outbox empty before the test")
    ws = None
    try:
        stop_rabbitmq()
        readiness(first, "degraded")
        results = parallel(lambda u: first.request("POST", f"/api/polls/{poll['id']}/vote", {"optionIndex": 2},
                                                   token=u.token), voters)
        assert [r.status for r in results] == [200] * len(voters), results
        assert first.stop(signal.SIGKILL) == -signal.SIGKILL
        assert outbox_rows(isolated, poll["id"]) == len(voters)
        # A new instance, started while the broker is still away, with a subscriber.
        second = make_isolated_server(FAST, name="ev-restarted")
        ws = Ws(second, voters[0].token)
        ws.subscribe([poll["id"]])
    finally:
        start_rabbitmq()
    try:
        wait_until(lambda: outbox_rows(isolated) == 0, 20, interval=0.1, message="the dead server's events published")
        ws.wait_for(stats_of(poll["id"], len(voters)), 10, "the count from the dead server's votes")
        wait_until(lambda: metric(second, "vote_events_consumed_total", type="vote.cast") >= len(voters), 10,
                   message="the new instance consuming them")
        time.sleep(0.5)
        assert metric(second, "vote_events_consumed_total", type="vote.cast") == len(voters)
        stats = second.request("GET", f"/api/polls/{poll['id']}/stats", token=voters[0].token)
        assert stats.json["totalVotes"] == len(voters), stats
    finally:
        if ws is not None:
            ws.close()
