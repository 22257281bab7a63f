"""Hostile input and failure paths: each class of bad input gets a 4xx in the API's error shape
and stores nothing; a stalled database gets 503 with Retry-After within a deadline, never a hang.
Requests go over raw sockets where the framing itself is the attack."""
import base64
import os
import re
import signal
import threading
import time
import urllib.parse
import uuid

import psycopg2
import pytest

from conftest import PG, create_database, drop_database, metric
from test_foundation import parse_raw_response, raw_exchange


def error_of(resp, status):
    assert resp.status == status, resp
    assert resp.json is not None and "error" in resp.json, resp
    assert resp.header("X-Request-ID"), resp
    return resp.json["error"]


def polls_titled(db, marker):
    return db("SELECT count(*) FROM polls WHERE title LIKE %s", f"%{marker}%")[0][0]


# ---------------------------------------------------------------------------------------------
# text that is not text


@pytest.mark.parametrize("field, value", [
    ("title", "Nul\u0000inside"),
    ("title", "Bell\u0007rings"),
    ("title", "Line\nbreak"),
    ("title", "C1\u0085control"),
    ("option", "Nul\u0000option"),
    ("option", "Escape\u001b[31m"),
    ("option", "Delete\u007f"),
])
def test_control_characters_in_titles_and_options_are_400_and_store_nothing(server, user, db, field, value):
    marker = uuid.uuid4().hex[:10]
    title = f"{value} {marker}" if field == "title" else f"Clean {marker}"
    options = [value, "Plain"] if field == "option" else ["A", "B"]
    resp = server.request("POST", "/api/polls", {"title": title, "options": options, "tags": ["x"]}, token=user.token)
    err = error_of(resp, 400)
    assert err["code"] == "validation_failed", resp
    wanted = "title" if field == "title" else "options[0]"
    assert [d["field"] for d in err["details"]] == [wanted], resp
    assert polls_titled(db, marker) == 0


@pytest.mark.parametrize("raw_q", [b"%ff%fe", b"%c3%28", b"%ed%a0%80", b"%f4%90%80%80", b"%e0%80%af", b"a%00b"])
def test_search_words_that_are_not_utf8_text_are_400_naming_q(server, user, raw_q):
    resp = server.request("GET", "/api/polls?q=" + raw_q.decode(), token=user.token)
    err = error_of(resp, 400)
    assert err["code"] == "validation_failed", resp
    assert [d["field"] for d in err["details"]] == ["q"], resp


@pytest.mark.parametrize("raw_tag", ["%ff", "caf%c3%a9", "a%20b", "x" * 33, "semi;colon"])
def test_a_tag_filter_that_no_tag_can_match_is_400_naming_tag(server, user, raw_tag):
    resp = server.request("GET", f"/api/polls?tag={raw_tag}", token=user.token)
    err = error_of(resp, 400)
    assert [d["field"] for d in err["details"]] == ["tag"], resp


def test_a_valid_tag_filter_in_capitals_still_works(server, user):
    server.create_poll(user.token, tags=("hostile-ok",))
    resp = server.request("GET", "/api/polls?tag=HOSTILE-OK", token=user.token)
    assert resp.status == 200, resp


# ---------------------------------------------------------------------------------------------
# framing


def chunked_post(path, chunks, token=None, trailer=b""):
    head = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\nConnection: close\r\n").encode()
    if token:
        head += f"Authorization: Bearer {token}\r\n".encode()
    body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks)
    return head + b"\r\n" + body + b"0\r\n" + trailer + b"\r\n"


def test_a_chunked_request_without_trailers_is_served(server, user):
    payload = b'{"title":"chunked ok","options":["a","b"],"tags":["x"]}'
    data, _ = raw_exchange(server.port, chunked_post("/api/polls", [payload[:10], payload[10:]], token=user.token))
    status, _, _ = parse_raw_response(data)
    assert status == 201, data[:300]


def test_an_authorization_sent_as_a_trailer_never_authenticates(server, user, db):
    marker = uuid.uuid4().hex[:10]
    payload = f'{{"title":"trailer {marker}","options":["a","b"],"tags":["x"]}}'.encode()
    request = chunked_post("/api/polls", [payload], trailer=f"Authorization: Bearer {user.token}\r\n".encode())
    data, _ = raw_exchange(server.port, request)
    status, headers, body = parse_raw_response(data)
    assert status == 400, data[:300]
    assert b'"error"' in body and "x-request-id" in headers
    assert polls_titled(db, marker) == 0


def test_endless_chunk_extensions_are_cut_off_long_before_they_end(server):
    # One chunk header whose extension never ends: the server must stop reading at its bound
    # (400 and close) rather than buffer all 16 MiB that the client is willing to send. What
    # the kernel's socket buffers take in after the server stopped reading is counted as sent.
    import socket
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sent = 0
    try:
        sock.sendall(b"POST /api/auth/login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2;e=")
        piece = b"e" * 65536
        try:
            while sent < 16 * 1024 * 1024:
                sock.sendall(piece)
                sent += len(piece)
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            pass
        try:
            answer = sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            answer = b""
    finally:
        sock.close()
    answered_400 = bool(answer) and parse_raw_response(answer)[0] == 400
    assert answered_400 or sent < 16 * 1024 * 1024, f"the server read {sent} bytes of chunk extension: {answer[:200]!r}"
    assert server.request("GET", "/healthz").status == 200


# ---------------------------------------------------------------------------------------------
# labels and headers an attacker could invent


def test_invented_methods_share_one_metrics_label(server):
    names = [f"ZZ{uuid.uuid4().hex[:8].upper()}" for _ in range(25)]
    for name in names:
        data, _ = raw_exchange(server.port, f"{name} /api/polls HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        assert data, name
    text = server.request("GET", "/metrics").raw
    methods = set(re.findall(r'^http_requests_total\{[^}]*method="([^"]*)"', text, re.M))
    assert not any(n in methods for n in names), methods
    assert "other" in methods, methods
    assert methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}, methods


def websocket_upgrade(server, token, key=None, version="13"):
    key = key if key is not None else base64.b64encode(os.urandom(16)).decode()
    request = (f"GET /api/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: {version}\r\n"
               f"Authorization: Bearer {token}\r\n\r\n").encode()
    import socket
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        if not data.startswith(b"HTTP/1.1 101"):
            sock.settimeout(2)
            try:
                while True:
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            except OSError:
                pass
        return parse_raw_response(data)
    finally:
        sock.close()


def test_the_websocket_101_names_no_server_software(server, user):
    status, headers, _ = websocket_upgrade(server, user.token)
    assert status == 101
    assert "boost" not in headers.get("server", "").lower(), headers


@pytest.mark.parametrize("key, version, status", [
    ("", "13", 400),
    ("not-base64-at-all", "13", 400),
    (base64.b64encode(b"short").decode(), "13", 400),
    (None, "8", 426),
])
def test_a_websocket_handshake_that_cannot_succeed_is_answered_in_the_error_shape(server, user, key, version, status):
    got, headers, body = websocket_upgrade(server, user.token, key=key, version=version)
    assert got == status, (got, body)
    assert headers.get("content-type", "").startswith("application/json"), headers
    assert b'"error"' in body, body
    assert "x-request-id" in headers and "boost" not in headers.get("server", "").lower(), headers
    if status == 426:
        assert headers.get("sec-websocket-version") == "13", headers


# ---------------------------------------------------------------------------------------------
# a database that stops answering: every wait has a deadline


@pytest.fixture
def stalled_database():
    """A database of its own whose backends can be frozen (SIGSTOP) and thawed."""
    name = f"vote_it_stall_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    create_database(name)
    frozen = []

    def backends():
        admin = psycopg2.connect(dbname="postgres", **PG)
        try:
            with admin.cursor() as cur:
                cur.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
                return [r[0] for r in cur.fetchall()]
        finally:
            admin.close()

    def freeze():
        pids = backends()
        assert pids, "the server holds no connection to freeze"
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
            frozen.append(pid)

    def thaw():
        while frozen:
            try:
                os.kill(frozen.pop(), signal.SIGCONT)
            except ProcessLookupError:
                pass

    class Stall:
        pass

    stall = Stall()
    stall.name, stall.freeze, stall.thaw = name, freeze, thaw
    try:
        yield stall
    finally:
        thaw()
        drop_database(name)


def test_a_vote_whose_writer_never_answers_gets_503_at_its_deadline(make_server, stalled_database):
    # One thread: the voter's account is then already known to the thread that takes the vote,
    # so nothing but the vote's own transaction waits on the frozen database.
    s = make_server(env={"VOTE_POSTGRES_DBNAME": stalled_database.name, "VOTE_VOTES_ANSWER_TIMEOUT": "2s",
                         "VOTE_SERVER_THREADS": "1"},
                    name="stalled-votes")
    author = s.register()
    first, second = s.create_poll(author.token), s.create_poll(author.token)
    voter = s.register()
    assert s.request("POST", f"/api/polls/{first['id']}/vote", {"optionIndex": 0}, token=voter.token).status == 200
    stalled_database.freeze()
    started = time.time()
    resp = s.request("POST", f"/api/polls/{second['id']}/vote", {"optionIndex": 1}, token=voter.token, timeout=30)
    waited = time.time() - started
    err = error_of(resp, 503)
    assert err["code"] == "unavailable" and resp.header("Retry-After"), resp
    assert 1.5 <= waited < 10, waited
    assert metric(s, "vote_load_shed_total", reason="vote_timeout") >= 1
    stalled_database.thaw()
    # Once the database answers again, so does the server; the vote is stored at most once.
    retry = s.request("POST", f"/api/polls/{second['id']}/vote", {"optionIndex": 1}, token=voter.token)
    assert retry.status in (200, 409), retry
    stats = s.request("GET", f"/api/polls/{second['id']}/stats", token=voter.token)
    assert stats.status == 200 and stats.json["totalVotes"] == 1, stats


def test_a_stalled_statement_and_the_requests_behind_it_get_503_at_their_deadlines(make_server, stalled_database):
    s = make_server(env={"VOTE_POSTGRES_DBNAME": stalled_database.name, "VOTE_SERVER_THREADS": "1",
                         "VOTE_POSTGRES_MAX_CONNECTIONS": "1", "VOTE_POSTGRES_ACQUIRE_TIMEOUT": "1s",
                         "VOTE_POSTGRES_STATEMENT_TIMEOUT": "2s"},
                    name="stalled-pool")
    user = s.register()
    assert s.request("GET", "/api/users/me", token=user.token).status == 200
    stalled_database.freeze()
    holder = {}

    def hold():
        started = time.time()
        holder["r"] = s.request("GET", "/api/users/me", token=user.token, timeout=60)
        holder["waited"] = time.time() - started

    # This request takes the pool's only connection and waits on the frozen backend: it is
    # answered once the statement's deadline (statement_timeout + 2 s) passes.
    t = threading.Thread(target=hold)
    t.start()
    time.sleep(0.5)
    # This one waits for the pool's connection: answered at the acquire timeout.
    started = time.time()
    resp = s.request("GET", "/api/users/me", token=user.token, timeout=30)
    waited = time.time() - started
    err = error_of(resp, 503)
    assert err["code"] == "unavailable" and resp.header("Retry-After") == "1", resp
    assert 0.8 <= waited < 6, waited
    assert metric(s, "vote_load_shed_total", reason="pg_pool") >= 1
    t.join(30)
    assert error_of(holder["r"], 503)["code"] == "unavailable", holder
    assert 3.5 <= holder["waited"] < 12, holder
    stalled_database.thaw()
    # The server recovers without a restart: the next request opens a fresh connection.
    assert s.request("GET", "/api/users/me", token=user.token).status == 200


# ---------------------------------------------------------------------------------------------
# JSON and query strings that could be read two ways


def test_an_escaped_key_is_the_same_key(server, user):
    other = server.register()
    poll = server.create_poll(user.token)
    raw = ('{"optionIndex": 0, "user\\u0049d": %d}' % other.id).encode()
    resp = server.request("POST", f"/api/polls/{poll['id']}/vote", raw=raw, token=user.token)
    assert error_of(resp, 403)["code"] == "forbidden", resp


@pytest.mark.parametrize("raw", [
    b'{"optionIndex": 0, "optionIndex": 1}',
    b'{"optionIndex": 0, "option\\u0049ndex": 1}',
    b'{"optionIndex": 0, "meta": {"a": 1, "a": 2}}',
])
def test_a_body_that_names_a_key_twice_is_400_and_writes_nothing(server, user, db, raw):
    poll = server.create_poll(user.token)
    resp = server.request("POST", f"/api/polls/{poll['id']}/vote", raw=raw, token=user.token)
    assert error_of(resp, 400)["code"] == "invalid_json", resp
    assert db("SELECT count(*) FROM votes WHERE poll_id = %s", poll["id"])[0][0] == 0


@pytest.mark.parametrize("query, field", [
    ("limit=%zz", "limit"),
    ("tag=go&q=%", "q"),
    ("q=a|b", "q"),
    ("limit=5&limit=6", "limit"),
    ("tag=a&tag=b", "tag"),
])
def test_a_query_string_that_does_not_parse_or_repeats_a_key_is_400_naming_it(server, user, query, field):
    resp = server.request("GET", f"/api/polls?{query}", token=user.token)
    err = error_of(resp, 400)
    assert err["code"] == "validation_failed", resp
    assert [d["field"] for d in err["details"]] == [field], resp


# ---------------------------------------------------------------------------------------------
# tokens


def test_a_well_signed_token_of_a_user_that_does_not_exist_is_401_everywhere(server, user, db):
    from test_accounts import claims_for, forge
    poll = server.create_poll(user.token)
    ghost = db("SELECT coalesce(max(id), 0) + 1000000 FROM users")[0][0]
    token = forge(claims_for(ghost))
    marker = uuid.uuid4().hex[:10]
    attempts = [
        ("POST", "/api/polls", {"title": f"ghost {marker}", "options": ["a", "b"], "tags": ["x"]}),
        ("POST", f"/api/polls/{poll['id']}/vote", {"optionIndex": 0}),
        ("POST", f"/api/polls/{poll['id']}/skip", {}),
        ("GET", "/api/polls", None),
        ("POST", "/api/ws/ticket", None),
    ]
    for method, path, body in attempts:
        resp = server.request(method, path, body, token=token)
        assert error_of(resp, 401)["code"] == "unauthorized", (path, resp)
    assert polls_titled(db, marker) == 0
    assert db("SELECT count(*) FROM votes WHERE user_id = %s", ghost)[0][0] == 0
    assert db("SELECT count(*) FROM skips WHERE user_id = %s", ghost)[0][0] == 0
