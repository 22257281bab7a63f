"""Polls: creation rules, reading one poll, its statistics, and what the caller did with it."""
import json
import re

import pytest

from conftest import parallel

RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


# Poll ids start at a random offset in these modules (see conftest.distinct_poll_ids).
pytestmark = pytest.mark.usefixtures("distinct_poll_ids")


def poll_body(**overrides):
    body = {"title": "Favorite language?", "options": ["Go", "Python", "Rust"], "tags": ["programming"]}
    body.update(overrides)
    return body


def assert_validation_failed(r, field_prefix=None):
    assert r.status == 400, r
    error = r.json["error"]
    assert error["code"] == "validation_failed", r
    assert isinstance(error["message"], str) and error["message"]
    details = error.get("details")
    assert isinstance(details, list) and details, r
    for d in details:
        assert isinstance(d["field"], str) and isinstance(d["message"], str), r
    if field_prefix is not None:
        assert any(d["field"].startswith(field_prefix) for d in details), (field_prefix, r)


def count_polls(db):
    return db("SELECT count(*) FROM polls")[0][0]


# ---------------------------------------------------------------- creation


def test_create_poll_answers_201_with_location_and_the_stored_poll(server, user, db):
    r = server.request("POST", "/api/polls", poll_body(), token=user.token)
    assert r.status == 201, r
    poll = r.json
    assert isinstance(poll["id"], int) and poll["id"] > 0
    assert r.header("Location") == f"/api/polls/{poll['id']}"
    assert poll["title"] == "Favorite language?"
    assert poll["options"] == ["Go", "Python", "Rust"]
    assert poll["tags"] == ["programming"]
    assert poll["creatorId"] == user.id
    assert RFC3339_UTC.match(poll["createdAt"]), poll
    assert r.header("Content-Type").startswith("application/json")
    rows = db("SELECT title, options, tags, creator_id FROM polls WHERE id = %s", poll["id"])
    assert rows == [("Favorite language?", ["Go", "Python", "Rust"], ["programming"], user.id)]

    # The Location answers with the same poll.
    g = server.request("GET", r.header("Location"), token=user.token)
    assert g.status == 200, g
    for key in ("id", "title", "options", "tags", "createdAt", "creatorId"):
        assert g.json[key] == poll[key], key


def test_create_poll_stores_title_options_and_tags_normalized(server, user, db):
    r = server.request("POST", "/api/polls",
                       poll_body(title="  \t Best editor?\n ", options=["  Vim ", "Emacs\t", " VS Code"],
                                 tags=["  Tools ", "EDITORS", "tools", " editors  ", "dev-2"]),
                       token=user.token)
    assert r.status == 201, r
    assert r.json["title"] == "Best editor?"
    assert r.json["options"] == ["Vim", "Emacs", "VS Code"]
    assert r.json["tags"] == ["tools", "editors", "dev-2"]
    rows = db("SELECT title, options, tags FROM polls WHERE id = %s", r.json["id"])
    assert rows == [("Best editor?", ["Vim", "Emacs", "VS Code"], ["tools", "editors", "dev-2"])]


@pytest.mark.parametrize("title", ["x", "t" * 200, "é" * 200, "  " + "t" * 200 + "  ", "🗳" * 200])
def test_create_poll_accepts_titles_of_1_to_200_characters_after_trimming(server, user, title):
    r = server.request("POST", "/api/polls", poll_body(title=title), token=user.token)
    assert r.status == 201, r
    assert r.json["title"] == title.strip()


@pytest.mark.parametrize("title", ["", "   ", "\t\n", "t" * 201, "é" * 201, None, 123, ["a"], {"a": 1}, True])
def test_create_poll_refuses_a_bad_title_and_stores_nothing(server, user, db, title):
    before = count_polls(db)
    r = server.request("POST", "/api/polls", poll_body(title=title), token=user.token)
    assert_validation_failed(r, "title")
    assert count_polls(db) == before


def test_create_poll_refuses_a_missing_title(server, user):
    body = poll_body()
    del body["title"]
    assert_validation_failed(server.request("POST", "/api/polls", body, token=user.token), "title")


@pytest.mark.parametrize("options", [
    ["a", "b"],
    [f"option {i}" for i in range(10)],
    ["o" * 100, "p" * 100],
    ["  " + "o" * 100 + "  ", "b"],
    ["é" * 100, "b"],
    ["Go", "Go!"],
    ["é", "è", "e", "ê"],
    ["Straße", "Strasse"],
])
def test_create_poll_accepts_2_to_10_options_of_1_to_100_characters(server, user, options):
    r = server.request("POST", "/api/polls", poll_body(options=options), token=user.token)
    assert r.status == 201, r
    assert r.json["options"] == [o.strip() for o in options]


@pytest.mark.parametrize("options", [
    [],
    ["only one"],
    [f"option {i}" for i in range(11)],
    ["a", ""],
    ["a", "   "],
    ["a", "o" * 101],
    ["a", "é" * 101],
    ["Go", "go"],
    ["Go", "  GO  "],
    ["Rust", "Go", "rust"],
    ["Äpfel", "äpfel"],
    ["Émile", "ÉMILE "],
    ["Ωmega", "ωmega"],
    ["Привет", "привет"],
    ["a", 1],
    ["a", None],
    ["a", ["b"]],
    "a,b",
    {"0": "a", "1": "b"},
    None,
    42,
])
def test_create_poll_refuses_bad_options_and_stores_nothing(server, user, db, options):
    before = count_polls(db)
    r = server.request("POST", "/api/polls", poll_body(options=options), token=user.token)
    assert_validation_failed(r, "options")
    assert count_polls(db) == before


def test_create_poll_refuses_missing_options(server, user):
    body = poll_body()
    del body["options"]
    assert_validation_failed(server.request("POST", "/api/polls", body, token=user.token), "options")


@pytest.mark.parametrize("tags,stored", [
    (["a"], ["a"]),
    (["t" * 32], ["t" * 32]),
    (["a", "b", "c", "d", "e"], ["a", "b", "c", "d", "e"]),
    (["Sports"], ["sports"]),
    ([" \tSci-Fi \n"], ["sci-fi"]),
    (["2024", "a-b-c", "-"], ["2024", "a-b-c", "-"]),
    (["news", "NEWS", " News "], ["news"]),
    (["x", "y", "x"], ["x", "y"]),
])
def test_create_poll_normalizes_and_merges_tags(server, user, db, tags, stored):
    r = server.request("POST", "/api/polls", poll_body(tags=tags), token=user.token)
    assert r.status == 201, r
    assert r.json["tags"] == stored
    assert db("SELECT tags FROM polls WHERE id = %s", r.json["id"]) == [(stored,)]


@pytest.mark.parametrize("tags", [
    [],
    ["a", "b", "c", "d", "e", "f"],
    [""],
    ["   "],
    ["t" * 33],
    ["two words"],
    ["under_score"],
    ["dot.tag"],
    ["café"],
    ["emoji🗳"],
    ["ok", "not ok"],
    ["#hash"],
    [1],
    [None],
    "sports",
    None,
    {"tag": "a"},
])
def test_create_poll_refuses_bad_tags_instead_of_repairing_them(server, user, db, tags):
    before = count_polls(db)
    r = server.request("POST", "/api/polls", poll_body(tags=tags), token=user.token)
    assert_validation_failed(r, "tags")
    assert count_polls(db) == before


def test_create_poll_refuses_missing_tags(server, user):
    body = poll_body()
    del body["tags"]
    assert_validation_failed(server.request("POST", "/api/polls", body, token=user.token), "tags")


def test_create_poll_reports_every_invalid_field_in_details(server, user):
    r = server.request("POST", "/api/polls", {"title": 5, "options": "x", "tags": [7]}, token=user.token)
    assert_validation_failed(r)
    fields = [d["field"] for d in r.json["error"]["details"]]
    assert any(f.startswith("title") for f in fields), fields
    assert any(f.startswith("options") for f in fields), fields
    assert any(f.startswith("tags") for f in fields), fields


@pytest.mark.parametrize("raw", [b"", b"   ", b"{", b"not json", b"[1,2]", b'"title"', b"null", b"42",
                                 b'{"title": "a", "options": ["a", "b"], "tags": ["a"]', b"\xff\xfe"])
def test_create_poll_with_a_malformed_body_is_a_4xx_and_stores_nothing(server, user, db, raw):
    before = count_polls(db)
    r = server.request("POST", "/api/polls", raw=raw, token=user.token)
    assert r.status == 400, r
    assert r.json["error"]["code"] in ("invalid_json", "validation_failed"), r
    assert count_polls(db) == before


def test_create_poll_requires_a_token(server, db):
    before = count_polls(db)
    r = server.request("POST", "/api/polls", poll_body())
    assert r.status == 401, r
    assert r.json["error"]["code"] == "unauthorized"
    assert r.header("WWW-Authenticate").startswith("Bearer")
    r = server.request("POST", "/api/polls", poll_body(), token="not-a-jwt")
    assert r.status == 401, r
    assert count_polls(db) == before


def test_create_poll_with_another_users_id_is_forbidden(server, user, db):
    other = server.register()
    before = count_polls(db)
    r = server.request("POST", "/api/polls", poll_body(userId=other.id), token=user.token)
    assert r.status == 403, r
    assert r.json["error"]["code"] == "forbidden"
    assert count_polls(db) == before
    # Its own id (number or numeric string) is fine, and the creator is the token's subject.
    for same in (user.id, str(user.id)):
        r = server.request("POST", "/api/polls", poll_body(userId=same), token=user.token)
        assert r.status == 201, r
        assert r.json["creatorId"] == user.id


def test_concurrent_creations_each_get_their_own_poll(server, user, db):
    titles = [f"Concurrent poll {i}" for i in range(24)]
    results = parallel(lambda t: server.request("POST", "/api/polls", poll_body(title=t), token=user.token),
                       titles, workers=24)
    assert all(r.status == 201 for r in results), [r for r in results if r.status != 201]
    ids = [r.json["id"] for r in results]
    assert len(set(ids)) == 24
    assert sorted(r.json["title"] for r in results) == sorted(titles)
    assert db("SELECT count(*) FROM polls WHERE id = ANY(%s)", ids)[0][0] == 24


# ---------------------------------------------------------------- reading


def test_get_poll_before_answering_has_null_my_vote_and_no_stats(server, user):
    poll = server.create_poll(user.token)
    other = server.register()
    for who in (user, other):  # the creator has not answered either
        r = server.request("GET", f"/api/polls/{poll['id']}", token=who.token)
        assert r.status == 200, r
        assert r.json["myVote"] is None
        assert "stats" not in r.json, r
        assert r.json["id"] == poll["id"] and r.json["options"] == poll["options"]


def test_get_poll_after_voting_shows_my_vote_and_stats_for_me_only(server, user):
    poll = server.create_poll(user.token)
    voter = server.register()
    r = server.request("POST", f"/api/polls/{poll['id']}/vote", {"optionIndex": 2}, token=voter.token)
    assert r.status == 200, r
    g = server.request("GET", f"/api/polls/{poll['id']}", token=voter.token)
    assert g.status == 200, g
    assert g.json["myVote"] == 2
    assert g.json["stats"]["pollId"] == poll["id"]
    assert g.json["stats"]["totalVotes"] == 1
    assert [o["votes"] for o in g.json["stats"]["options"]] == [0, 0, 1]
    # Someone who has not answered still sees neither.
    g = server.request("GET", f"/api/polls/{poll['id']}", token=user.token)
    assert g.json["myVote"] is None and "stats" not in g.json, g


def test_get_poll_after_skipping_shows_stats_but_no_vote(server, user):
    poll = server.create_poll(user.token)
    skipper = server.register()
    r = server.request("POST", f"/api/polls/{poll['id']}/skip", {}, token=skipper.token)
    assert r.status == 200, r
    g = server.request("GET", f"/api/polls/{poll['id']}", token=skipper.token)
    assert g.status == 200, g
    assert g.json["myVote"] is None
    assert g.json["stats"]["totalVotes"] == 0
    assert g.json["stats"]["pollId"] == poll["id"]


def test_a_new_poll_is_readable_and_votable_on_another_instance_at_once(server, user, make_server):
    other = make_server(name="other")
    voter = server.register()
    for _ in range(3):
        poll = server.create_poll(user.token, options=("A", "B"))
        r = other.request("GET", f"/api/polls/{poll['id']}", token=voter.token)
        assert r.status == 200, r
        assert r.json["title"] == poll["title"] and r.json["options"] == ["A", "B"]
        s = other.request("GET", f"/api/polls/{poll['id']}/stats", token=voter.token)
        assert s.status == 200, s
        assert [o["text"] for o in s.json["options"]] == ["A", "B"]
        v = other.request("POST", f"/api/polls/{poll['id']}/vote", {"optionIndex": 1}, token=voter.token)
        assert v.status == 200, v
        assert [(o["text"], o["votes"]) for o in v.json["stats"]["options"]] == [("A", 0), ("B", 1)]


@pytest.mark.parametrize("suffix", ["", "/stats"])
def test_unknown_poll_is_404_poll_not_found(server, user, db, suffix):
    missing = db("SELECT coalesce(max(id), 0) + 1000 FROM polls")[0][0]
    r = server.request("GET", f"/api/polls/{missing}{suffix}", token=user.token)
    assert r.status == 404, r
    assert r.json["error"]["code"] == "poll_not_found"
    assert r.json["error"]["message"]


@pytest.mark.parametrize("path_id", ["abc", "0", "-1", "1.5", "1e3", "0x10", "99999999999999999999999", "%20", "1a"])
@pytest.mark.parametrize("suffix", ["", "/stats"])
def test_non_numeric_or_impossible_poll_id_is_404(server, user, path_id, suffix):
    r = server.request("GET", f"/api/polls/{path_id}{suffix}", token=user.token)
    assert r.status == 404, r
    assert r.json["error"]["code"] in ("poll_not_found", "not_found"), r


def test_reading_a_poll_requires_a_token(server, user):
    poll = server.create_poll(user.token)
    for path in (f"/api/polls/{poll['id']}", f"/api/polls/{poll['id']}/stats"):
        r = server.request("GET", path)
        assert r.status == 401, r
        assert r.header("WWW-Authenticate").startswith("Bearer")


def test_other_methods_on_a_poll_are_405_with_allow(server, user):
    poll = server.create_poll(user.token)
    r = server.request("DELETE", f"/api/polls/{poll['id']}", token=user.token)
    assert r.status == 405, r
    assert r.json["error"]["code"] == "method_not_allowed"
    assert "GET" in r.header("Allow")
    r = server.request("GET", f"/api/polls/{poll['id']}/vote", token=user.token)
    assert r.status == 405, r
    assert "POST" in r.header("Allow")


# ---------------------------------------------------------------- stats


def test_stats_of_a_new_poll_are_all_zero(server, user):
    poll = server.create_poll(user.token, options=("Red", "Green", "Blue", "Black"))
    r = server.request("GET", f"/api/polls/{poll['id']}/stats", token=user.token)
    assert r.status == 200, r
    assert r.json == {"pollId": poll["id"], "totalVotes": 0,
                      "options": [{"index": i, "text": t, "votes": 0, "percentage": 0}
                                  for i, t in enumerate(["Red", "Green", "Blue", "Black"])]}


def test_stats_percentages_are_rounded_to_one_decimal(server, user, db):
    poll = server.create_poll(user.token, options=("A", "B", "C"))
    voters = parallel(lambda _: server.register(), range(3), workers=3)
    for voter, option in zip(voters, (0, 0, 1)):
        r = server.request("POST", f"/api/polls/{poll['id']}/vote", {"optionIndex": option}, token=voter.token)
        assert r.status == 200, r
    r = server.request("GET", f"/api/polls/{poll['id']}/stats", token=user.token)
    assert r.status == 200, r
    assert r.json["totalVotes"] == 3
    assert [(o["index"], o["text"], o["votes"], o["percentage"]) for o in r.json["options"]] == \
        [(0, "A", 2, 66.7), (1, "B", 1, 33.3), (2, "C", 0, 0)]
    # Printed as plain decimals, not in exponent form.
    assert '"percentage":66.7' in r.raw.replace(" ", ""), r.raw
    assert db("SELECT coalesce(sum(votes), 0) FROM poll_option_counts WHERE poll_id = %s", poll["id"])[0][0] == 3


def test_stats_of_a_unanimous_poll_show_100_percent(server, user):
    poll = server.create_poll(user.token, options=("Yes", "No"))
    voter = server.register()
    r = server.request("POST", f"/api/polls/{poll['id']}/vote", {"optionIndex": 1}, token=voter.token)
    assert r.status == 200, r
    s = server.request("GET", f"/api/polls/{poll['id']}/stats", token=user.token)
    assert [o["percentage"] for o in s.json["options"]] == [0, 100]
    assert json.loads(s.raw)["options"][1]["percentage"] == 100.0


# ---------------------------------------------------------------------------------------------
# the caller's own lists


def test_my_polls_lists_the_callers_polls_newest_first_with_counts_page_by_page(server):
    author, other, voter = server.register(), server.register(), server.register()
    mine = [server.create_poll(author.token, title=f"mine {i}")["id"] for i in range(5)]
    server.create_poll(other.token, title="not mine")
    assert server.request("POST", f"/api/polls/{mine[4]}/vote", {"optionIndex": 2}, token=voter.token).status == 200
    first = server.request("GET", "/api/users/me/polls?limit=2", token=author.token)
    assert first.status == 200, first
    assert [p["id"] for p in first.json["polls"]] == [mine[4], mine[3]]
    assert first.json["polls"][0]["stats"]["totalVotes"] == 1
    assert first.json["polls"][0]["stats"]["options"][2]["votes"] == 1
    assert first.json["polls"][0]["myVote"] is None
    # The author's own vote on their poll shows as on any poll.
    assert server.request("POST", f"/api/polls/{mine[3]}/vote", {"optionIndex": 1}, token=author.token).status == 200
    again = server.request("GET", "/api/users/me/polls?limit=2", token=author.token)
    assert [p["myVote"] for p in again.json["polls"]] == [None, 1]
    seen = [p["id"] for p in first.json["polls"]]
    cursor = first.json["nextCursor"]
    while cursor:
        page = server.request("GET", f"/api/users/me/polls?limit=2&cursor={cursor}", token=author.token)
        assert page.status == 200, page
        seen += [p["id"] for p in page.json["polls"]]
        cursor = page.json["nextCursor"]
    assert seen == mine[::-1]
    empty = server.request("GET", "/api/users/me/polls", token=voter.token)
    assert empty.status == 200 and empty.json == {"polls": [], "nextCursor": None}


def test_my_votes_lists_the_polls_voted_on_with_my_vote_and_not_the_skipped(server):
    author, voter = server.register(), server.register()
    polls = [server.create_poll(author.token)["id"] for _ in range(3)]
    assert server.request("POST", f"/api/polls/{polls[0]}/vote", {"optionIndex": 1}, token=voter.token).status == 200
    assert server.request("POST", f"/api/polls/{polls[2]}/vote", {"optionIndex": 0}, token=voter.token).status == 200
    assert server.request("POST", f"/api/polls/{polls[1]}/skip", {}, token=voter.token).status == 200
    r = server.request("GET", "/api/users/me/votes", token=voter.token)
    assert r.status == 200, r
    assert [(p["id"], p["myVote"]) for p in r.json["polls"]] == [(polls[2], 0), (polls[0], 1)]
    assert all(p["stats"]["totalVotes"] == 1 for p in r.json["polls"])
    assert r.json["nextCursor"] is None


def test_a_cursor_of_one_list_or_user_is_refused_by_another(server):
    author, other = server.register(), server.register()
    for _ in range(3):
        server.create_poll(author.token)
    cursor = server.request("GET", "/api/users/me/polls?limit=1", token=author.token).json["nextCursor"]
    assert cursor
    for path, token in [("/api/users/me/votes", author.token), ("/api/users/me/polls", other.token),
                        ("/api/polls", author.token)]:
        r = server.request("GET", f"{path}?cursor={cursor}", token=token)
        assert r.status == 400 and r.json["error"]["code"] == "invalid_cursor", (path, r)


@pytest.mark.parametrize("limit", ["0", "51", "x", "-1"])
def test_my_lists_refuse_a_bad_limit(server, user, limit):
    for path in ("/api/users/me/polls", "/api/users/me/votes"):
        r = server.request("GET", f"{path}?limit={limit}", token=user.token)
        assert r.status == 400 and r.json["error"]["details"][0]["field"] == "limit", r
