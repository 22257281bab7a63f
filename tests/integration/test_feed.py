"""The feed (GET /api/polls): newest first, never a poll the caller answered, stable cursors,
filters, search and seed-era paging, across server instances (API.md "The feed", docs/FEED.md).

Servers run on the `isolated` database/vhost/Redis database, so events of other test sessions
(same ids, other databases) cannot hide polls from these users."""
import base64
import signal
import time
import urllib.parse
import uuid

import pytest

from conftest import Server, metric, parallel, wait_until

POLL_KEYS = {"id", "title", "options", "tags", "createdAt", "creatorId", "myVote"}


@pytest.fixture(scope="module")
def servers(isolated):
    """Two instances on one database. B runs no event consumers: it never hears of A's votes,
    so only the feed's own check against the database can keep its answers exact."""
    a = Server(isolated.database, env=isolated.env, name="feed-a").start()
    b = Server(isolated.database, env={**isolated.env, "VOTE_RABBITMQ_CONSUMERS": "false"}, name="feed-b").start()
    yield a, b
    codes = {s.name: s.stop() for s in (a, b)}
    assert codes == {"feed-a": 0, "feed-b": 0}, f"{codes}: {a.read_log()[-2000:]} {b.read_log()[-2000:]}"


@pytest.fixture
def lagging_pair(isolated):
    """A, and B that hears no events and refreshes its index only hourly: only the feed's own
    checks against the database can make B see what was written through A."""
    a = Server(isolated.database, env=isolated.env, name="lag-a").start()
    b = Server(isolated.database, env={**isolated.env, "VOTE_RABBITMQ_CONSUMERS": "false",
                                       "VOTE_FEED_REFRESH_INTERVAL": "1h"}, name="lag-b").start()
    yield a, b
    code = a.stop()
    b.stop(signal.SIGKILL)  # a graceful stop would wait for the hourly refresh timer
    assert code == 0, a.read_log()[-3000:]


def new_tag():
    return f"t{uuid.uuid4().hex[:14]}"


def get_feed(s, token, **params):
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    return s.request("GET", "/api/polls" + (f"?{query}" if query else ""), token=token)


def page_ok(s, token, **params):
    r = get_feed(s, token, **params)
    assert r.status == 200, r
    assert set(r.json) == {"polls", "nextCursor"}, r
    for poll in r.json["polls"]:
        # Feed polls are unanswered: myVote null, no stats.
        assert set(poll) == POLL_KEYS, poll
        assert poll["myVote"] is None, poll
    return r.json


def walk(s, token, limit=50, max_pages=200, **params):
    """Every poll of the feed, following nextCursor; asserts no page repeats a poll."""
    ids, cursor = [], None
    for _ in range(max_pages):
        body = page_ok(s, token, limit=limit, cursor=cursor, **params)
        ids += [p["id"] for p in body["polls"]]
        cursor = body["nextCursor"]
        if cursor is None:
            break
        assert body["polls"], "a page with a nextCursor must not be empty"
    else:
        raise AssertionError("the feed never ended")
    assert len(ids) == len(set(ids)), f"a poll came twice: {ids}"
    return ids


def create_polls(s, token, n, tag, title="Poll", sync=None):
    """Creates n polls tagged `tag` on s; with sync=(servers...), waits until each of them lists all
    of them for `token` (an instance without event consumers learns of new polls by its refresh)."""
    ids = []
    for i in range(n):
        ids.append(s.create_poll(token, title=f"{title} {i} {uuid.uuid4().hex[:6]}", tags=(tag,))["id"])
    for other in sync or ():
        indexed(other, token, tag, ids)
    return ids


def indexed(s, token, tag, ids):
    """Waits until s's feed for a caller who answered none of `ids` contains all of them."""
    wait_until(lambda: set(ids) <= {p["id"] for p in page_ok(s, token, tag=tag, limit=50)["polls"]}
               if len(ids) <= 50 else set(ids) <= set(walk(s, token, tag=tag)), 5, interval=0.05,
               message=f"{s.name} indexing new polls")


def vote(s, token, poll_id, option=0):
    r = s.request("POST", f"/api/polls/{poll_id}/vote", {"optionIndex": option}, token=token)
    assert r.status == 200, r
    return r.json


def skip(s, token, poll_id):
    r = s.request("POST", f"/api/polls/{poll_id}/skip", {}, token=token)
    assert r.status == 200, r


def test_paging_with_votes_and_skips_between_pages_never_repeats_and_covers_every_unanswered_poll(servers):
    a, b = servers
    author, reader = a.register("author"), a.register("reader")
    tag = new_tag()
    created = create_polls(a, author.token, 40, tag, sync=(b,))
    assert created == sorted(created)

    answered, shown, cursor = set(), [], None
    # Pages alternate between the instances; so do the votes and skips.
    for page in range(20):
        s = (a, b)[page % 2]
        body = page_ok(s, reader.token, tag=tag, limit=7, cursor=cursor)
        ids = [p["id"] for p in body["polls"]]
        assert len(ids) <= 7
        assert all(p["tags"] == [tag] for p in body["polls"])
        assert not set(ids) & set(shown), f"page {page} repeats {set(ids) & set(shown)}"
        assert not set(ids) & answered, f"page {page} shows answered polls {set(ids) & answered}"
        shown += ids
        cursor = body["nextCursor"]
        if cursor is None:
            break
        other = (b, a)[page % 2]
        # Answer some polls just shown, and some not shown yet (they must never appear).
        vote(other, reader.token, ids[0], 1)
        skip(s, reader.token, ids[2])
        answered |= {ids[0], ids[2]}
        ahead = [i for i in created if i not in answered and i not in shown and i < ids[-1]]
        if ahead:
            vote(s, reader.token, ahead[len(ahead) // 2], 0)
            answered.add(ahead[len(ahead) // 2])
        if len(ahead) > 3:
            skip(other, reader.token, ahead[-1])
            answered.add(ahead[-1])
    else:
        raise AssertionError("the feed never ended")

    assert shown == sorted(shown, reverse=True), "newest first means id descending across pages"
    # Shown at the time = every poll minus those answered before their turn came.
    assert set(shown) | answered == set(created)
    # Now the feed from the top is exactly the unanswered ones, newest first, on both instances.
    expected = sorted(set(created) - answered, reverse=True)
    assert walk(a, reader.token, tag=tag, limit=7) == expected
    assert walk(b, reader.token, tag=tag, limit=7) == expected
    # The author answered nothing: the author's feed has all 40.
    assert walk(b, author.token, tag=tag, limit=50) == sorted(created, reverse=True)


def test_vote_on_one_instance_is_respected_by_the_very_next_feed_call_on_another(servers):
    a, b = servers
    u = a.register()
    tag = new_tag()
    created = create_polls(a, u.token, 16, tag, sync=(b,))
    # B has loaded this user's answered set before the votes: its memory is stale afterwards.
    assert [p["id"] for p in page_ok(b, u.token, tag=tag, limit=50)["polls"]] == created[::-1]
    remaining = created[::-1]
    for i in range(8):
        top = remaining[0]
        if i % 2:
            skip(a, u.token, top)
        else:
            vote(a, u.token, top, 2)
        remaining.remove(top)
        body = page_ok(b, u.token, tag=tag, limit=3)
        assert [p["id"] for p in body["polls"]] == remaining[:3], f"after answering {top} on A"


def checks(s):
    """s's feed checks against the database so far (one per pick of a page): (current, behind)."""
    return (metric(s, "vote_feed_checks_total", result="current"),
            metric(s, "vote_feed_checks_total", result="behind"))


def answered_on(reader, writer, servers):
    """A user with six polls whose answered set `reader` has loaded; then `writer` takes a vote on
    the newest and a skip on the next. Returns (user, tag, the four unanswered ids newest first)."""
    u = servers[0].register()
    tag = new_tag()
    created = create_polls(servers[0], u.token, 6, tag, sync=servers[1:])
    page_ok(reader, u.token, tag=tag)  # loads u's answered set
    vote(writer, u.token, created[-1], 1)
    skip(writer, u.token, created[-2])
    return u, tag, created[-3::-1]


def feed_ids(s, u, tag):
    return [p["id"] for p in page_ok(s, u.token, tag=tag)["polls"]]


def test_answers_written_through_an_instance_keep_its_answered_set_exact(servers):
    a, _ = servers
    u, tag, unanswered = answered_on(a, a, servers)
    before = checks(a)
    for _ in range(5):
        assert feed_ids(a, u, tag) == unanswered
    current, behind = checks(a)
    # Each answer took the next number of u's sequence here, so the set stayed complete: no page
    # needed a per-poll probe.
    assert (current - before[0], behind - before[1]) == (5, 0)


def test_an_instance_that_never_hears_of_answers_checks_each_page_and_then_reloads(servers):
    a, b = servers
    u, tag, unanswered = answered_on(b, a, servers)
    before = checks(b)
    # B runs no event consumers: its set lacks both answers, the stored sequence says so, and the
    # page is checked id by id: still exact.
    assert feed_ids(b, u, tag) == unanswered
    assert checks(b)[1] > before[1]
    # Behind for longer than a second: B loads the set again and is exact without probes.
    time.sleep(1.1)
    assert feed_ids(b, u, tag) == unanswered
    mid = checks(b)
    assert feed_ids(b, u, tag) == unanswered
    assert checks(b) == (mid[0] + 1, mid[1])


def test_answer_events_from_another_instance_complete_the_set(servers):
    a, b = servers
    u, tag, unanswered = answered_on(a, b, servers)
    # Exact at once (checked), and current again as soon as both events (numbered 1 and 2) have
    # reached A, well before a reload would be due.
    assert feed_ids(a, u, tag) == unanswered

    def current_page():
        before = checks(a)
        assert feed_ids(a, u, tag) == unanswered
        return checks(a)[0] == before[0] + 1

    wait_until(current_page, 0.9, interval=0.02, message="A's set complete through B's answers")


def test_concurrent_votes_on_both_instances_are_all_excluded_right_after(servers):
    a, b = servers
    u = a.register()
    tag = new_tag()
    created = create_polls(b, u.token, 30, tag, sync=(a,))
    page_ok(a, u.token, tag=tag)
    page_ok(b, u.token, tag=tag)
    chosen = created[::2] + created[1:6:2]
    results = parallel(lambda i: (a, b)[i % 2].request("POST", f"/api/polls/{chosen[i]}/vote",
                                                       {"optionIndex": 1}, token=u.token),
                       range(len(chosen)), workers=len(chosen))
    assert [r.status for r in results] == [200] * len(chosen), results
    expected = sorted(set(created) - set(chosen), reverse=True)
    assert walk(a, u.token, tag=tag, limit=4) == expected
    assert walk(b, u.token, tag=tag, limit=4) == expected


def test_tag_filter_keeps_only_polls_with_that_tag(servers):
    a, b = servers
    u = a.register()
    t1, t2 = new_tag(), new_tag()
    only1 = [a.create_poll(u.token, tags=(t1,))["id"] for _ in range(3)]
    both = [a.create_poll(u.token, tags=(t2, t1))["id"] for _ in range(2)]
    only2 = [a.create_poll(u.token, tags=(t2,))["id"] for _ in range(3)]
    indexed(b, u.token, t1, only1 + both)
    indexed(b, u.token, t2, only2 + both)
    assert walk(b, u.token, tag=t1) == sorted(only1 + both, reverse=True)
    assert walk(b, u.token, tag=t2) == sorted(only2 + both, reverse=True)
    # Tags are case-insensitive (stored lower-cased) and trimmed.
    assert walk(a, u.token, tag=f" {t2.upper()} ") == sorted(only2 + both, reverse=True)
    assert walk(a, u.token, tag="no-such-tag-" + uuid.uuid4().hex[:8]) == []


def test_untagged_feed_is_every_unanswered_poll_newest_first(servers, isolated):
    a, b = servers
    u = a.register()
    tag = new_tag()
    mine = create_polls(a, u.token, 5, tag, sync=(b,))
    vote(a, u.token, mine[1])
    skip(b, u.token, mine[3])
    ids = walk(b, u.token, limit=50)
    everything = [r[0] for r in isolated.db("SELECT id FROM polls ORDER BY id DESC")]
    answered = {r[0] for r in isolated.db(
        "SELECT poll_id FROM votes WHERE user_id = %s UNION SELECT poll_id FROM skips WHERE user_id = %s", u.id, u.id)}
    assert ids == [i for i in everything if i not in answered]
    assert mine[1] not in ids and mine[3] not in ids and mine[4] in ids


def test_search_finds_word_stems_and_combines_with_tag(servers):
    a, b = servers
    u = a.register()
    t1, t2 = new_tag(), new_tag()
    language = a.create_poll(u.token, title="Favorite programming language?", options=("C++", "Python", "Go"),
                             tags=(t1,))["id"]
    a.create_poll(u.token, title="Best pizza topping?", options=("Cheese", "Olives"), tags=(t1,))
    other_tag = a.create_poll(u.token, title="Which language do you dream in?", options=("English", "French"),
                              tags=(t2,))["id"]
    in_option = a.create_poll(u.token, title="What do you speak at home?", options=("Sign languages", "Others"),
                              tags=(t1,))["id"]

    # Stemming: "languages" finds "language"; options are searched too; case does not matter.
    assert walk(b, u.token, q="languages", tag=t1) == [in_option, language]
    assert walk(a, u.token, q="LANGUAGE", tag=t1) == [in_option, language]
    assert walk(a, u.token, q="languages", tag=t2) == [other_tag]
    everywhere = walk(b, u.token, q="languages", limit=3)
    assert {language, other_tag, in_option} <= set(everywhere)
    assert everywhere == sorted(everywhere, reverse=True)
    assert walk(a, u.token, q="pizza", tag=t2) == []
    # Both words must match (web search syntax).
    assert walk(a, u.token, q="programming languages", tag=t1) == [language]
    # Answered polls leave search results too.
    vote(b, u.token, language, 1)
    assert walk(a, u.token, q="languages", tag=t1) == [in_option]


def test_search_pages_follow_the_cursor_without_repeats(servers):
    a, b = servers
    u = a.register()
    tag = new_tag()
    ids = [a.create_poll(u.token, title=f"Language question {i}", tags=(tag,))["id"] for i in range(8)]
    first = page_ok(a, u.token, q="languages", tag=tag, limit=3)
    assert [p["id"] for p in first["polls"]] == ids[::-1][:3]
    vote(a, u.token, ids[7 - 4])  # not shown yet: must not come
    shown = [p["id"] for p in first["polls"]]
    cursor = first["nextCursor"]
    while cursor:
        body = page_ok(b, u.token, q="languages", tag=tag, limit=3, cursor=cursor)
        shown += [p["id"] for p in body["polls"]]
        cursor = body["nextCursor"]
    assert shown == [i for i in ids[::-1] if i != ids[3]]


def test_new_polls_created_between_pages_do_not_disturb_the_next_page(servers):
    a, b = servers
    u = a.register()
    tag = new_tag()
    created = create_polls(a, u.token, 15, tag, sync=(b,))
    first = page_ok(a, u.token, tag=tag, limit=5)
    assert [p["id"] for p in first["polls"]] == created[::-1][:5]
    newer = create_polls(b, u.token, 4, tag, title="Newer", sync=(a,))
    second = page_ok(b, u.token, tag=tag, limit=5, cursor=first["nextCursor"])
    assert [p["id"] for p in second["polls"]] == created[::-1][5:10]
    third = page_ok(a, u.token, tag=tag, limit=5, cursor=second["nextCursor"])
    assert [p["id"] for p in third["polls"]] == created[::-1][10:15]
    assert third["nextCursor"] is None
    # A fresh start shows the new ones first.
    assert [p["id"] for p in page_ok(a, u.token, tag=tag, limit=5)["polls"]] == newer[::-1] + created[-1:]


@pytest.mark.parametrize("limit", ["0", "51", "x", "-1", "1.5", "10abc", "9999999999"])
def test_limit_outside_1_to_50_is_refused(servers, limit):
    a, _ = servers
    u = a.register()
    r = a.request("GET", f"/api/polls?limit={urllib.parse.quote(limit)}", token=u.token)
    assert r.status == 400, r
    assert r.json["error"]["code"] == "validation_failed", r
    assert r.json["error"].get("details", [{"field": "limit"}])[0]["field"] == "limit", r


def test_limit_bounds_and_default(servers):
    a, _ = servers
    u = a.register()
    tag = new_tag()
    create_polls(a, u.token, 12, tag)
    assert len(page_ok(a, u.token, tag=tag)["polls"]) == 10
    assert len(page_ok(a, u.token, tag=tag, limit=1)["polls"]) == 1
    body = page_ok(a, u.token, tag=tag, limit=50)
    assert len(body["polls"]) == 12 and body["nextCursor"] is None


def test_forged_or_tampered_cursors_are_refused(servers):
    a, b = servers
    u, other = a.register(), a.register()
    tag = new_tag()
    create_polls(a, u.token, 6, tag, sync=(b,))
    cursor = page_ok(a, u.token, tag=tag, limit=2)["nextCursor"]
    assert cursor
    # The genuine cursor works on either instance.
    assert len(page_ok(b, u.token, tag=tag, limit=2, cursor=cursor)["polls"]) == 2

    raw = bytearray(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    moved = bytearray(raw)
    moved[8] ^= 0x01  # the id's lowest byte: another position, same MAC
    forged_bytes = bytearray(raw)
    forged_bytes[-1] ^= 0x80  # the MAC
    flipped = cursor[:10] + ("A" if cursor[10] != "A" else "B") + cursor[11:]
    bad = {
        "garbage": "not-a-cursor",
        "another id": base64.urlsafe_b64encode(bytes(moved)).decode().rstrip("="),
        "altered mac": base64.urlsafe_b64encode(bytes(forged_bytes)).decode().rstrip("="),
        "flipped character": flipped,
        "truncated": cursor[:-1],
        "extended": cursor + "A",
        "random": base64.urlsafe_b64encode(uuid.uuid4().bytes * 3)[:len(cursor)].decode(),
    }
    for what, value in bad.items():
        r = get_feed(b, u.token, tag=tag, limit=2, cursor=value)
        assert r.status == 400, (what, r)
        assert r.json["error"]["code"] == "invalid_cursor", (what, r)
    # Bound to the user and the filters it was issued for (docs/FEED.md).
    for what, r in {"other user": get_feed(a, other.token, tag=tag, limit=2, cursor=cursor),
                    "no tag": get_feed(a, u.token, limit=2, cursor=cursor),
                    "other tag": get_feed(a, u.token, tag=new_tag(), limit=2, cursor=cursor),
                    "with q": get_feed(a, u.token, tag=tag, q="poll", limit=2, cursor=cursor)}.items():
        assert r.status == 400 and r.json["error"]["code"] == "invalid_cursor", (what, r)


def test_user_with_thousands_of_answered_polls_gets_exactly_the_unseen_ones(servers, isolated):
    a, b = servers
    u = a.register()
    tag = new_tag()
    ids = [r[0] for r in isolated.db(
        "INSERT INTO polls (title, options, tags, creator_id) "
        "SELECT 'Bulk poll ' || g, ARRAY['Yes', 'No'], ARRAY[%s], %s FROM generate_series(1, 3000) g RETURNING id",
        tag, u.id)]
    ids.sort()
    # The newest 2000 skipped, then 500 scattered among the older 1000 (every other one).
    answered = set(ids[-2000:]) | set(ids[:1000:2])
    assert len(answered) == 2500
    isolated.db("INSERT INTO skips (user_id, poll_id) SELECT %s, unnest(%s::bigint[])", u.id, sorted(answered))
    expected = [i for i in reversed(ids) if i not in answered]
    assert len(expected) == 500

    # A server that starts now loads everything at once.
    fresh = Server(isolated.database, env=isolated.env, name="feed-fresh").start()
    try:
        assert walk(fresh, u.token, tag=tag, limit=50) == expected
        assert walk(fresh, u.token, tag=tag, limit=7, max_pages=100) == expected
        untagged = page_ok(fresh, u.token, limit=10)
        newest_unanswered = [r[0] for r in isolated.db(
            "SELECT id FROM polls p WHERE NOT EXISTS (SELECT 1 FROM skips s WHERE s.user_id = %s AND s.poll_id = p.id) "
            "AND NOT EXISTS (SELECT 1 FROM votes v WHERE v.user_id = %s AND v.poll_id = p.id) "
            "ORDER BY id DESC LIMIT 10", u.id, u.id)]
        assert [p["id"] for p in untagged["polls"]] == newest_unanswered
        # Seed-era offset deep into the answered region.
        assert [p["id"] for p in page_ok(fresh, u.token, tag=tag, limit=20, page=3)["polls"]] == expected[40:60]
    finally:
        assert fresh.stop() == 0, fresh.read_log()[-3000:]
    # Running servers pick the polls up by their periodic refresh.
    for s in (a, b):
        wait_until(lambda: [p["id"] for p in page_ok(s, u.token, tag=tag, limit=50)["polls"]] == expected[:50],
                   10, interval=0.2, message=f"{s.name} indexing the bulk polls")
        assert walk(s, u.token, tag=tag, limit=50) == expected


def test_page_parameter_is_an_offset_into_the_current_unseen_list(servers):
    a, b = servers
    u = a.register()
    tag = new_tag()
    created = create_polls(a, u.token, 12, tag, sync=(b,))
    unseen = created[::-1]

    def page(s, n, limit=5):
        return [p["id"] for p in page_ok(s, u.token, tag=tag, limit=limit, page=n)["polls"]]

    assert page(a, 1) == unseen[0:5]
    assert page(b, 2) == unseen[5:10]
    assert page(a, 3) == unseen[10:12]
    assert page(b, 4) == []
    body = page_ok(a, u.token, tag=tag, limit=5, page=1)
    assert body["nextCursor"] is not None
    assert page_ok(a, u.token, tag=tag, limit=5, page=3)["nextCursor"] is None
    # Answering polls of page 1 shifts the later pages (it is an offset into the current list).
    vote(a, u.token, unseen[0])
    skip(b, u.token, unseen[3])
    vote(b, u.token, unseen[7])
    unseen = [i for i in unseen if i not in (unseen[0], unseen[3], unseen[7])]
    assert page(b, 1) == unseen[0:5]
    assert page(a, 2) == unseen[5:9]
    assert page(a, 1, limit=4) + page(b, 2, limit=4) + page(a, 3, limit=4) == unseen
    r = a.request("GET", f"/api/polls?tag={tag}&page=0", token=u.token)
    assert r.status == 400, r


def test_feed_requires_a_token(servers):
    a, _ = servers
    r = a.request("GET", "/api/polls")
    assert r.status == 401 and r.json["error"]["code"] == "unauthorized", r
    assert r.header("WWW-Authenticate").startswith("Bearer"), r


def test_cursor_from_an_instance_that_knows_newer_polls_works_on_one_that_has_not_heard_of_them(isolated):
    """Event delivery and the periodic refresh take time (seconds while RabbitMQ is down): a page
    served by the instance that created the polls, then the next page by one that has not heard of
    them yet, must not skip them. Here the lagging instance never hears by itself."""
    a = Server(isolated.database, env=isolated.env, name="feed-lag-a").start()
    lagging = Server(isolated.database, env={**isolated.env, "VOTE_RABBITMQ_CONSUMERS": "false",
                                             "VOTE_FEED_REFRESH_INTERVAL": "1h"}, name="feed-lag-b").start()
    try:
        u = a.register()
        tag = new_tag()
        created = create_polls(a, u.token, 12, tag)
        first = page_ok(a, u.token, tag=tag, limit=5)
        assert [p["id"] for p in first["polls"]] == created[::-1][:5]
        second = page_ok(lagging, u.token, tag=tag, limit=5, cursor=first["nextCursor"])
        assert [p["id"] for p in second["polls"]] == created[::-1][5:10]
        third = page_ok(lagging, u.token, tag=tag, limit=5, cursor=second["nextCursor"])
        assert [p["id"] for p in third["polls"]] == created[::-1][10:]
        assert third["nextCursor"] is None
    finally:
        code = a.stop()
        # SIGKILL: with a refresh interval of an hour, a graceful stop waits for that timer.
        lagging.stop(signal.SIGKILL)
    assert code == 0, a.read_log()[-3000:]


def test_feed_calls_racing_votes_never_show_a_poll_whose_vote_was_already_answered(servers):
    a, b = servers
    u = a.register()
    tag = new_tag()
    created = create_polls(a, u.token, 40, tag, sync=(b,))
    answered_at = {}
    feeds = []
    stop = []

    def voter():
        for i, poll_id in enumerate(created[::-1][:30]):
            s = (a, b)[i % 2]
            if i % 3 == 2:
                skip(s, u.token, poll_id)
            else:
                vote(s, u.token, poll_id, i % 3)
            answered_at[poll_id] = time.monotonic()
        stop.append(True)

    def reader(s):
        while not stop:
            started = time.monotonic()
            body = page_ok(s, u.token, tag=tag, limit=5)
            feeds.append((s.name, started, [p["id"] for p in body["polls"]]))

    parallel(lambda job: job(), [voter, lambda: reader(a), lambda: reader(b), lambda: reader(b)], workers=4)
    assert len(feeds) > 20, "the readers did not overlap the votes"
    for name, started, ids in feeds:
        stale = [i for i in ids if i in answered_at and answered_at[i] < started]
        assert not stale, f"{name} showed {stale}, answered before the feed call started"
        assert ids == sorted(ids, reverse=True)
    assert walk(b, u.token, tag=tag) == created[::-1][30:]


def test_tiny_caches_keep_the_feed_exact(isolated):
    """One answered set and two poll details in memory: users and polls are evicted and loaded
    again all the time."""
    s = Server(isolated.database, env={**isolated.env, "VOTE_FEED_USER_CACHE_SIZE": "1",
                                       "VOTE_FEED_POLL_CACHE_SIZE": "2"}, name="feed-tiny").start()
    try:
        users = [s.register() for _ in range(3)]
        tag = new_tag()
        created = create_polls(s, users[0].token, 15, tag)
        answered = {u.id: set() for u in users}
        for round_ in range(5):
            for k, u in enumerate(users):
                body = page_ok(s, u.token, tag=tag, limit=4)
                ids = [p["id"] for p in body["polls"]]
                assert ids == [i for i in created[::-1] if i not in answered[u.id]][:4], (round_, k)
                assert all(p["title"].startswith("Poll ") and p["tags"] == [tag] for p in body["polls"])
                target = ids[(round_ + k) % len(ids)]
                if k == 1:
                    skip(s, u.token, target)
                else:
                    vote(s, u.token, target, 1)
                answered[u.id].add(target)
        for u in users:
            assert walk(s, u.token, tag=tag, limit=3) == [i for i in created[::-1] if i not in answered[u.id]]
    finally:
        code = s.stop()
    assert code == 0, s.read_log()[-3000:]


def test_a_poll_created_on_one_instance_is_in_the_very_next_feed_of_another(lagging_pair):
    """Read-your-writes across instances, 200 times: only the feed's own probe of the newest
    stored poll can make B find A's polls."""
    a, b = lagging_pair
    author, reader = a.register(), b.register()
    tag = new_tag()
    missing = []
    for i in range(200):
        # Every fourth poll has a tag B has never seen: the tag feed must find it too.
        poll_tag = new_tag() if i % 4 == 0 else tag
        poll = a.create_poll(author.token, title=f"ryw {i}", tags=(poll_tag,))
        newest = page_ok(b, reader.token, limit=1)["polls"]
        tagged = page_ok(b, reader.token, tag=poll_tag, limit=1)["polls"]
        if [p["id"] for p in newest] != [poll["id"]] or [p["id"] for p in tagged] != [poll["id"]]:
            missing.append(i)
    assert missing == [], f"{len(missing)} of 200 new polls missing on B: {missing[:20]}"


def test_a_poll_voted_on_through_one_instance_never_comes_back_on_another(lagging_pair):
    a, b = lagging_pair
    author, voter = a.register(), a.register()
    tag = new_tag()
    create_polls(a, author.token, 60, tag)
    answered = set()
    for i in range(50):
        top = page_ok(b, voter.token, tag=tag, limit=3)["polls"]
        assert not answered & {p["id"] for p in top}, (i, top)
        answer = "vote" if i % 2 == 0 else "skip"
        body = {"optionIndex": 0} if answer == "vote" else {}
        r = a.request("POST", f"/api/polls/{top[0]['id']}/{answer}", body, token=voter.token)
        assert r.status == 200, r
        answered.add(top[0]["id"])
