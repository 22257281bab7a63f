"""Foundation: health, metrics, HTTP robustness, the error model, shutdown, migrations and the CLI."""
import http.client
import json
import math
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid

import psycopg2
import pytest

from conftest import BIN, PG, ROOT

CONFIG = os.path.join(ROOT, "config", "config.yaml")
MIGRATIONS = os.path.join(ROOT, "migrations")


# ---------------------------------------------------------------------------------------------
# helpers


def wait_until(check, timeout=10.0, interval=0.05, what="condition"):
    """Polls check() until it returns a truthy value or the deadline passes."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out waiting for {what}; last value: {last!r}")


def raw_exchange(port, data, half_close=False, timeout=12.0):
    """Sends raw bytes on a fresh connection and reads until the server closes (or the timeout).
    Returns (bytes received, how the read ended: 'closed' | 'reset' | 'timeout')."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    received = b""
    ended = "closed"
    try:
        try:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                ended = "reset"
                break
            except socket.timeout:
                ended = "timeout"
                break
            if not chunk:
                break
            received += chunk
    finally:
        sock.close()
    return received, ended


def parse_raw_response(data):
    """Splits one raw HTTP/1.1 response into (status, headers dict lower-cased, body bytes)."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = body[:int(headers["content-length"])]
    return status, headers, body


def assert_error_body(resp, status, code=None):
    assert resp.status == status, resp
    assert (resp.header("Content-Type") or "").startswith("application/json"), resp.headers
    assert isinstance(resp.json, dict) and set(resp.json) == {"error"}, resp
    err = resp.json["error"]
    assert isinstance(err.get("code"), str) and re.fullmatch(r"[a-z][a-z0-9_]*", err["code"]), resp
    assert isinstance(err.get("message"), str) and err["message"], resp
    if code is not None:
        assert err["code"] == code, resp
    return err


def run_vote(args, env=None, timeout=60):
    """Runs the vote binary to completion; a process that does not end in time fails the test."""
    full_env = dict(os.environ)
    full_env.update({
        # If a `serve` we expect to refuse starts anyway, it must not grab a real port.
        "VOTE_SERVER_HOST": "127.0.0.1",
        "VOTE_SERVER_PORT": "0",
        "VOTE_AUTH_HASH_OPSLIMIT": "1",
        "VOTE_AUTH_HASH_MEMLIMIT": "8192",
        "ASAN_OPTIONS": "detect_leaks=0",
    })
    full_env.update({k: str(v) for k, v in (env or {}).items()})
    try:
        return subprocess.run([BIN] + list(args), cwd=ROOT, env=full_env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"`vote {' '.join(args)}` did not finish within {timeout}s (it should have refused to start): "
                    f"{(e.stderr or b'')[-2000:]!r}")


# ---------------------------------------------------------------------------------------------
# Prometheus text exposition format 0.0.4, parsed by hand


_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


def _parse_value(text, where):
    if text in ("+Inf", "Inf"):
        return math.inf
    if text == "-Inf":
        return -math.inf
    if text == "NaN":
        return math.nan
    assert re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", text), f"{where}: bad value {text!r}"
    return float(text)


def _parse_labels(text, pos, where):
    """Parses `{a="x",b="y"}` starting at text[pos] == '{'; returns (labels, position after '}')."""
    assert text[pos] == "{"
    pos += 1
    labels = {}
    while True:
        if text[pos] == "}":
            return labels, pos + 1
        assert pos < len(text), f"{where}: unterminated labels"
        m = _LABEL_NAME.match(text, pos)
        assert m, f"{where}: bad label name at {text[pos:]!r}"
        name = m.group(0)
        pos = m.end()
        assert text[pos:pos + 2] == '="', f"{where}: expected =\" after label {name}"
        pos += 2
        value = []
        while True:
            assert pos < len(text), f"{where}: unterminated label value"
            ch = text[pos]
            if ch == "\\":
                nxt = text[pos + 1]
                assert nxt in '\\"n', f"{where}: bad escape \\{nxt}"
                value.append("\n" if nxt == "n" else nxt)
                pos += 2
            elif ch == '"':
                pos += 1
                break
            else:
                assert ch != "\n"
                value.append(ch)
                pos += 1
        assert name not in labels, f"{where}: label {name} repeated"
        labels[name] = "".join(value)
        if text[pos] == ",":
            pos += 1
        else:
            assert text[pos] == "}", f"{where}: expected , or }} at {text[pos:]!r}"


def parse_exposition(text):
    """Returns (types {family: type}, samples [(name, labels, value)]); asserts the syntax."""
    assert text.endswith("\n"), "exposition must end with a newline"
    types, helps, samples, seen = {}, {}, [], set()
    for lineno, line in enumerate(text[:-1].split("\n"), 1):
        where = f"line {lineno} {line!r}"
        if line.strip() == "":
            continue
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                assert _NAME.fullmatch(parts[2]), where
                if parts[1] == "TYPE":
                    assert len(parts) == 4 and parts[3] in _TYPES, where
                    assert parts[2] not in types, f"{where}: second TYPE line for {parts[2]}"
                    assert not any(family_of(s[0], types) == parts[2] for s in samples), \
                        f"{where}: TYPE after samples of its family"
                    types[parts[2]] = parts[3]
                else:
                    assert parts[2] not in helps, f"{where}: second HELP line"
                    helps[parts[2]] = parts[3] if len(parts) == 4 else ""
            continue
        m = _NAME.match(line)
        assert m, where
        name, pos = m.group(0), m.end()
        labels = {}
        if pos < len(line) and line[pos] == "{":
            labels, pos = _parse_labels(line, pos, where)
        rest = line[pos:]
        assert rest.startswith(" "), f"{where}: expected a space before the value"
        fields = rest.split()
        assert 1 <= len(fields) <= 2, where
        value = _parse_value(fields[0], where)
        if len(fields) == 2:
            assert re.fullmatch(r"-?\d+", fields[1]), f"{where}: bad timestamp"
        key = (name, tuple(sorted(labels.items())))
        assert key not in seen, f"{where}: duplicate sample"
        seen.add(key)
        samples.append((name, labels, value))
    for name, _, _ in samples:
        assert family_of(name, types) in types, f"sample {name} has no TYPE line"
    return types, samples


def family_of(name, types):
    if name in types:
        return name
    for suffix in ("_bucket", "_sum", "_count"):
        base = name[: -len(suffix)]
        if name.endswith(suffix) and types.get(base) in ("histogram", "summary"):
            if suffix == "_bucket" and types[base] != "histogram":
                continue
            return base
    return name


def check_histograms(types, samples):
    for family, kind in types.items():
        if kind != "histogram":
            continue
        series = {}
        for name, labels, value in samples:
            if family_of(name, types) != family:
                continue
            rest = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
            s = series.setdefault(rest, {"buckets": [], "sum": None, "count": None})
            if name == family + "_bucket":
                assert "le" in labels, f"{family} bucket without le"
                s["buckets"].append((_parse_value(labels["le"], family), value))
            elif name == family + "_sum":
                s["sum"] = value
            elif name == family + "_count":
                s["count"] = value
            else:
                pytest.fail(f"histogram {family} has a plain sample {name}")
        for rest, s in series.items():
            assert s["count"] is not None and s["sum"] is not None, (family, rest)
            bounds = [b for b, _ in s["buckets"]]
            assert bounds == sorted(bounds) and bounds[-1] == math.inf, (family, rest, bounds)
            counts = [c for _, c in s["buckets"]]
            assert counts == sorted(counts), f"{family}{rest}: cumulative buckets decrease: {counts}"
            assert counts[-1] == s["count"], (family, rest)


def scrape(server):
    resp = server.request("GET", "/metrics")
    assert resp.status == 200, resp
    ctype = resp.header("Content-Type") or ""
    assert ctype.startswith("text/plain") and "version=0.0.4" in ctype, ctype
    types, samples = parse_exposition(resp.raw)
    return types, samples


def values(samples, name, **labels):
    return [v for n, l, v in samples if n == name and all(l.get(k) == w for k, w in labels.items())]


# ---------------------------------------------------------------------------------------------
# health and metrics


def test_healthz_answers_ok(server):
    resp = server.request("GET", "/healthz")
    assert resp.status == 200 and resp.json == {"status": "ok"}, resp


def test_readyz_reports_all_three_dependencies_ok(server):
    # RabbitMQ connects in the background after start-up, so allow it a moment.
    def ready():
        r = server.request("GET", "/readyz")
        return r if r.status == 200 and r.json and r.json.get("status") == "ok" else None

    resp = wait_until(ready, timeout=15, interval=0.2, what="/readyz to report ok")
    assert resp.json == {"status": "ok", "checks": {"postgres": "ok", "redis": "ok", "rabbitmq": "ok"}}, resp


def test_metrics_exposition_is_valid_and_labels_routes_by_template(server, user):
    poll_id = 123000 + int(uuid.uuid4().int % 1000)
    assert server.request("GET", f"/api/polls/{poll_id}", token=user.token).status == 404
    assert server.request("GET", f"/no/such/path/{poll_id}").status == 404

    types, samples = scrape(server)

    assert types.get("http_requests_total") == "counter"
    labelled = [(l, v) for n, l, v in samples if n == "http_requests_total"]
    assert all({"method", "route", "status"} <= set(l) for l, _ in labelled), labelled
    assert any(l["route"] == "/api/polls/{id}" and l["method"] == "GET" and l["status"] == "404" and v >= 1
               for l, v in labelled), labelled
    # Raw paths (ids, unknown URLs) never become label values: that would grow series without bound.
    for name, labels, _ in samples:
        for value in labels.values():
            assert str(poll_id) not in value and "/no/such" not in value, (name, labels)

    assert types.get("http_request_duration_seconds") == "histogram"
    assert values(samples, "http_request_duration_seconds_count", route="/api/polls/{id}"), \
        "no duration histogram for the poll route"
    check_histograms(types, samples)

    assert types.get("http_requests_in_flight") == "gauge"
    in_flight = values(samples, "http_requests_in_flight")
    # The scrape itself is in flight while the exposition is rendered.
    assert len(in_flight) == 1 and in_flight[0] >= 1, in_flight

    for name, kind in (("process_resident_memory_bytes", "gauge"), ("process_cpu_seconds_total", "counter"),
                       ("process_start_time_seconds", "gauge")):
        assert types.get(name) == kind, (name, types.get(name))
        assert values(samples, name) and values(samples, name)[0] > 0, name
    start = values(samples, "process_start_time_seconds")[0]
    assert time.time() - 24 * 3600 < start <= time.time() + 5


def test_metrics_count_each_request(server):
    def count():
        _, samples = scrape(server)
        return sum(values(samples, "http_requests_total", route="/healthz", status="200"))

    before = count()
    for _ in range(3):
        assert server.request("GET", "/healthz").status == 200
    assert count() == before + 3


# ---------------------------------------------------------------------------------------------
# HTTP robustness


def test_body_of_exactly_64_kib_is_accepted_by_the_transport(server):
    # A JSON object padded to exactly 65536 bytes is read and answered by the handler (not 413).
    body = {"username": "x", "email": "bad", "password": "p", "pad": ""}
    body["pad"] = "a" * (65536 - len(json.dumps(body).encode()))
    raw = json.dumps(body).encode()
    assert len(raw) == 65536
    resp = server.request("POST", "/api/auth/register", raw=raw)
    assert_error_body(resp, 400, "validation_failed")


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_body_over_64_kib_is_413_with_error_json(server, chunked):
    payload = b'{"pad":"' + b"a" * 65530 + b'"}'
    assert len(payload) == 65540
    if chunked:
        head = (b"POST /api/auth/register HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                b"X-Request-ID: big-body-1\r\nTransfer-Encoding: chunked\r\n\r\n")
        data = head + b"%x\r\n" % len(payload) + payload + b"\r\n0\r\n\r\n"
    else:
        head = (b"POST /api/auth/register HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                b"X-Request-ID: big-body-1\r\nContent-Length: %d\r\n\r\n" % len(payload))
        data = head + payload
    received, ended = raw_exchange(server.port, data)
    assert received, f"no response at all (connection {ended})"
    status, headers, body = parse_raw_response(received)
    assert status == 413, received[:500]
    assert headers.get("content-type", "").startswith("application/json"), headers
    err = json.loads(body)["error"]
    assert err["code"] and err["message"], body
    assert headers.get("x-request-id"), f"413 without X-Request-ID: {headers}"
    assert server.request("GET", "/healthz").status == 200


def test_body_of_64_kib_plus_one_is_413(server):
    raw = b"{" + b" " * 65535 + b"}"
    assert len(raw) == 65537
    try:
        resp = server.request("POST", "/api/auth/register", raw=raw)
    except ConnectionResetError:
        pytest.fail("the server reset the connection instead of answering 413")
    assert_error_body(resp, 413)


GARBAGE = {
    "junk-line": b"\x00\x01\x02GARBAGE \xff\xfe NOT HTTP\r\n\r\n",
    "tls-hello": bytes.fromhex("1603010200010001fc0303") + os.urandom(64) + b"\r\n\r\n",
    "bad-version": b"GET /healthz HTTP/9.7\r\nHost: t\r\n\r\n",
    "bad-content-length": b"POST /api/auth/login HTTP/1.1\r\nHost: t\r\nContent-Length: 12abc\r\n\r\n",
    "header-without-colon": b"GET /healthz HTTP/1.1\r\nHost: t\r\nNoColonHere\r\n\r\n",
    "content-length-and-chunked": (b"POST /api/auth/login HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                                   b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    "two-content-lengths": b"POST /api/auth/login HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nabcdef",
    # Not chunked as the final coding: the body length is unknowable (RFC 9112 6.3), so 400 and close;
    # read as bodiless, its body would be taken for a second request (request smuggling).
    "transfer-encoding-gzip": (b"POST /api/auth/login HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n"
                               b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"),
    "chunked-not-last": (b"POST /api/auth/login HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"
                         b"0\r\n\r\n"),
    "binary-then-eof": os.urandom(200).replace(b"\r", b"").replace(b"\n", b""),
}


@pytest.mark.parametrize("name", list(GARBAGE))
def test_garbage_http_is_refused_without_harming_the_server(server, name):
    received, ended = raw_exchange(server.port, GARBAGE[name], half_close=(name == "binary-then-eof"), timeout=5)
    assert ended != "timeout", f"the server neither answered nor closed the connection: {received[:300]!r}"
    if received:
        status, headers, body = parse_raw_response(received)
        assert status == 400, received[:300]
        assert received.count(b"HTTP/1.1 ") == 1, f"more than one answer: {received!r}"
        if body:
            assert json.loads(body)["error"]["code"], body
    # A normal request on a new connection still works and the process lives on.
    assert server.request("GET", "/healthz").status == 200
    assert server.proc.poll() is None


def test_over_long_header_is_431_or_400(server):
    data = (b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Huge: " + b"a" * 20000 + b"\r\n\r\n")
    received, ended = raw_exchange(server.port, data)
    assert received, f"no response (connection {ended})"
    status, headers, body = parse_raw_response(received)
    assert status in (431, 400), received[:300]
    assert json.loads(body)["error"]["code"], body
    assert headers.get("x-request-id"), f"{status} without X-Request-ID: {headers}"
    assert server.request("GET", "/healthz").status == 200
    assert server.proc.poll() is None


def test_pipelined_requests_are_answered_in_order(server):
    data = (b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Request-ID: first\r\n\r\n"
            b"GET /nope HTTP/1.1\r\nHost: t\r\nX-Request-ID: second\r\n\r\n"
            b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Request-ID: third\r\nConnection: close\r\n\r\n")
    received, ended = raw_exchange(server.port, data)
    assert ended == "closed", ended
    answers = []
    while received:
        status, headers, body = parse_raw_response(received)
        answers.append((status, headers.get("x-request-id")))
        head_len = received.index(b"\r\n\r\n") + 4
        received = received[head_len + int(headers.get("content-length", 0)):]
    assert answers == [(200, "first"), (404, "second"), (200, "third")], answers


def test_expect_100_continue_is_honoured(server):
    name = f"cont_{uuid.uuid4().hex[:12]}"
    body = json.dumps({"username": name, "email": f"{name}@example.com", "password": "password123"}).encode()
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        sock.sendall(b"POST /api/auth/register HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                     b"Expect: 100-continue\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body))
        interim = b""
        while b"\r\n\r\n" not in interim:
            chunk = sock.recv(4096)
            assert chunk, f"closed before 100 Continue: {interim!r}"
            interim += chunk
        assert interim.startswith(b"HTTP/1.1 100"), interim
        rest = interim[interim.index(b"\r\n\r\n") + 4:]
        sock.sendall(body)
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
    finally:
        sock.close()
    status, _, final = parse_raw_response(rest)
    assert status == 201, rest[:300]
    assert json.loads(final)["user"]["username"] == name


def test_expect_100_continue_with_oversized_length_is_413_before_the_body(server):
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        sock.sendall(b"POST /api/auth/register HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                     b"Expect: 100-continue\r\nContent-Length: 10000000\r\n\r\n")
        received = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    finally:
        sock.close()
    status, _, body = parse_raw_response(received)
    assert status == 413, received[:300]
    assert json.loads(body)["error"]["code"]


def test_slow_or_idle_connections_are_closed_after_the_timeouts(make_server):
    srv = make_server(env={"VOTE_SERVER_READ_TIMEOUT": "1s", "VOTE_SERVER_IDLE_TIMEOUT": "2s"}, name="timeouts")

    def closed_after(data):
        sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        started = time.time()
        try:
            sock.sendall(data)
            received = b""
            while True:
                try:
                    chunk = sock.recv(4096)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                received += chunk
        except socket.timeout:
            pytest.fail(f"connection still open after 10 s (sent {data!r})")
        finally:
            sock.close()
        return time.time() - started, received

    # A request whose headers never finish (slowloris) is cut off after read_timeout.
    elapsed, received = closed_after(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: ")
    assert 0.8 <= elapsed < 4, elapsed
    # A keep-alive connection with nothing to say is closed after idle_timeout.
    elapsed, received = closed_after(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
    assert received.startswith(b"HTTP/1.1 200"), received[:200]
    assert 1.8 <= elapsed < 5, elapsed
    assert srv.request("GET", "/healthz").status == 200


def test_keep_alive_connection_serves_several_requests(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        for _ in range(3):
            conn.request("GET", "/healthz")
            resp = conn.getresponse()
            assert resp.status == 200 and json.loads(resp.read()) == {"status": "ok"}
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------
# error model


def test_unknown_path_is_404_not_found(server):
    for path in ("/nope", "/api/nope", "/api/polls/1/nope", "/api/users/me/extra/deep"):
        resp = server.request("GET", path)
        assert_error_body(resp, 404, "not_found")
        assert resp.header("X-Request-ID")


@pytest.mark.parametrize("method,path,allowed", [
    ("DELETE", "/api/polls/1", {"GET"}),
    ("PUT", "/api/auth/login", {"POST"}),
    ("GET", "/api/auth/register", {"POST"}),
    ("DELETE", "/api/users/me", {"GET", "PATCH"}),
    ("POST", "/healthz", {"GET"}),
    ("PUT", "/api/polls", {"GET", "POST"}),
])
def test_known_path_with_other_method_is_405_with_allow(server, method, path, allowed):
    resp = server.request(method, path, headers={"Content-Length": "0"})
    assert_error_body(resp, 405, "method_not_allowed")
    allow = resp.header("Allow")
    assert allow is not None, resp.headers
    # The routed methods, upper-case, sorted, ", "-separated (docs/openapi.yaml).
    assert allow == ", ".join(sorted(allowed)), allow


def test_request_id_is_echoed_when_sent(server, user):
    rid = f"test-{uuid.uuid4()}"
    for method, path, token in (("GET", "/healthz", None), ("GET", "/nope", None),
                                ("GET", "/api/users/me", None), ("GET", "/api/users/me", user.token),
                                ("DELETE", "/api/polls/1", None)):
        resp = server.request(method, path, token=token, headers={"X-Request-ID": rid})
        assert resp.header("X-Request-ID") == rid, (method, path, resp.headers)


def test_request_id_is_generated_when_absent(server):
    ids = set()
    for path in ("/healthz", "/healthz", "/nope", "/api/users/me"):
        resp = server.request("GET", path)
        rid = resp.header("X-Request-ID")
        assert rid and re.fullmatch(r"[\x21-\x7e]{8,128}", rid), (path, rid)
        ids.add(rid)
    assert len(ids) == 4, f"request ids repeat: {ids}"


@pytest.mark.parametrize("sent", ["has space", "x" * 129, 'quo"te', "back\\slash"])
def test_unusable_request_id_is_replaced_by_a_generated_one(server, sent):
    resp = server.request("GET", "/healthz", headers={"X-Request-ID": sent})
    rid = resp.header("X-Request-ID")
    assert rid != sent and re.fullmatch(r"[0-9a-f]{32}", rid or ""), rid


def test_request_id_of_128_characters_is_echoed(server):
    sent = "r" * 120 + uuid.uuid4().hex[:8]
    assert server.request("GET", "/healthz", headers={"X-Request-ID": sent}).header("X-Request-ID") == sent


def test_head_is_answered_like_get_without_a_body(server):
    resp = server.request("HEAD", "/healthz")
    assert resp.status == 200 and resp.raw == "", resp
    assert resp.header("X-Request-ID")


def test_trailing_slash_names_the_same_resource(server, user):
    assert server.request("GET", "/healthz/").status == 200
    resp = server.request("GET", "/api/users/me/", token=user.token)
    assert resp.status == 200 and resp.json["id"] == user.id, resp


@pytest.mark.parametrize("raw", [b'{"username": ', b"not json", b"[1, 2, 3]", b'"a string"', b"{'single': 1}",
                                 b'{"a":1}garbage', b"\xff\xfe"])
def test_malformed_json_is_400_with_error_body(server, raw):
    resp = server.request("POST", "/api/auth/register", raw=raw)
    assert_error_body(resp, 400)
    assert resp.header("X-Request-ID")


def test_malformed_json_on_authenticated_endpoint_is_400(server, user):
    resp = server.request("PATCH", "/api/users/me", raw=b'{"username": "abc"', token=user.token)
    assert_error_body(resp, 400)
    resp = server.request("POST", "/api/polls", raw=b"{{{", token=user.token)
    assert_error_body(resp, 400)


def test_deeply_nested_json_is_4xx_not_5xx(server):
    raw = b"[" * 5000 + b"]" * 5000
    resp = server.request("POST", "/api/auth/login", raw=raw)
    assert 400 <= resp.status < 500, resp
    assert server.proc.poll() is None


def test_5xx_bodies_do_not_leak_internals(make_server, empty_database):
    # A server on a database without the schema: every query fails inside PostgreSQL.
    srv = make_server(env={"VOTE_POSTGRES_DBNAME": empty_database}, name="no-schema")
    rid = f"leak-{uuid.uuid4().hex}"
    resp = srv.request("POST", "/api/auth/register",
                       {"username": "leak_check", "email": "leak@example.com", "password": "password123"},
                       headers={"X-Request-ID": rid})
    assert 500 <= resp.status < 600, resp
    err = assert_error_body(resp, resp.status)
    assert err["code"] in ("internal_error", "unavailable"), resp
    assert "details" not in err
    for word in ("relation", "users", "sql", "select", "insert", "postgres", "pg", "exception", "error:", "42p01"):
        assert word not in resp.raw.lower(), (word, resp.raw)
    assert resp.header("X-Request-ID") == rid
    # The details go to the log, under the request id, for the operator.
    wait_until(lambda: rid in srv.read_log(), timeout=5, what="the failure in the log")


# ---------------------------------------------------------------------------------------------
# graceful shutdown


def test_sigterm_lets_an_in_flight_request_finish(make_server, db):
    # Expensive hashing makes a registration take about a second: long enough to signal mid-request.
    srv = make_server(env={"VOTE_AUTH_HASH_OPSLIMIT": "4", "VOTE_AUTH_HASH_MEMLIMIT": "268435456"},
                      name="slow-hash")
    name = f"drain_{uuid.uuid4().hex[:12]}"
    result = {}

    def register():
        try:
            result["resp"] = srv.request("POST", "/api/auth/register",
                                         {"username": name, "email": f"{name}@example.com",
                                          "password": "password123"}, timeout=60)
        except Exception as e:  # noqa: BLE001 - reported below
            result["error"] = e

    # An idle keep-alive connection must not hold the shutdown up.
    idle = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    idle.request("GET", "/healthz")
    assert idle.getresponse().read()

    worker = threading.Thread(target=register)
    worker.start()

    def register_in_flight():
        if "resp" in result or "error" in result:
            pytest.fail(f"the registration finished before SIGTERM could be sent: {result}")
        _, samples = scrape(srv)
        return values(samples, "http_requests_in_flight")[0] >= 2  # the registration and this scrape

    try:
        wait_until(register_in_flight, timeout=10, interval=0.02, what="the registration to be in flight")
        srv.proc.send_signal(signal.SIGTERM)
        worker.join(timeout=60)
        assert not worker.is_alive()
        assert "error" not in result, f"in-flight request failed: {result.get('error')!r}\n{srv.read_log()[-3000:]}"
        assert result["resp"].status == 201, result["resp"]
        assert result["resp"].json["user"]["username"] == name
        # The answer tells the client not to reuse a connection that is going away.
        assert (result["resp"].header("Connection") or "").lower() == "close", result["resp"].headers
        try:
            code = srv.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail(f"server did not exit after SIGTERM: {srv.read_log()[-3000:]}")
    finally:
        idle.close()
    assert code == 0, f"exit code {code}: {srv.read_log()[-3000:]}"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", srv.port), timeout=2).close()
    # The registration was stored, not just answered.
    assert db("SELECT count(*) FROM users WHERE username = %s", name) == [(1,)]


def test_sigterm_on_idle_server_exits_zero_quickly(make_server):
    srv = make_server(name="idle-stop")
    # An idle keep-alive connection must not hold the shutdown up.
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    conn.request("GET", "/healthz")
    assert conn.getresponse().read()
    started = time.time()
    srv.proc.send_signal(signal.SIGTERM)
    try:
        code = srv.proc.wait(timeout=8)
    except subprocess.TimeoutExpired:
        pytest.fail("an idle keep-alive connection held the shutdown up")
    finally:
        conn.close()
    assert code == 0, srv.read_log()[-3000:]
    assert time.time() - started < 8


# ---------------------------------------------------------------------------------------------
# migrations and the command line


def migration_files():
    names = sorted(f for f in os.listdir(MIGRATIONS) if re.fullmatch(r"V\d+__\w+\.sql", f))
    assert names, "no migrations found"
    return [(re.match(r"(V\d+)__(\w+)\.sql", f).group(1), re.match(r"(V\d+)__(\w+)\.sql", f).group(2))
            for f in names]


def function_files():
    """The database functions (src/sql/functions/<name>.sql), in the order they are applied."""
    return sorted(f[:-4] for f in os.listdir(os.path.join(ROOT, "src", "sql", "functions")) if f.endswith(".sql"))


@pytest.fixture
def empty_database():
    name = f"vote_it_mig_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(dbname="postgres", **PG)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def test_three_concurrent_migrate_up_apply_each_migration_once(empty_database):
    files = migration_files()
    env = dict(os.environ, VOTE_POSTGRES_DBNAME=empty_database, ASAN_OPTIONS="detect_leaks=0")

    status = run_vote(["migrate", "status", "--config", CONFIG], env={"VOTE_POSTGRES_DBNAME": empty_database})
    assert status.returncode == 0, status.stderr
    assert status.stdout.split("\n")[:-1] == [f"{v} {n} pending" for v, n in files], status.stdout

    procs = [subprocess.Popen([BIN, "migrate", "up", "--config", CONFIG], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outputs = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail("migrate up hung")
        outputs.append((p.returncode, out, err))
    assert [code for code, _, _ in outputs] == [0, 0, 0], outputs

    # Exactly one process applied the migrations; the others found them applied.
    applying = [out for _, out, _ in outputs if "applied" in out]
    assert len(applying) == 1, outputs
    functions = [w for f in function_files() for w in ("function", f)]
    assert applying[0].split() == ["migrations:", "applied"] + [v for v, _ in files] + functions, applying
    assert sum("up to date" in out for _, out, _ in outputs) == 2, outputs

    conn = psycopg2.connect(dbname=empty_database, **PG)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT version, name FROM schema_migrations ORDER BY version")
            assert cur.fetchall() == files
            cur.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'users'")
            assert cur.fetchone()[0] == 1
    finally:
        conn.close()

    status = run_vote(["migrate", "status", "--config", CONFIG], env={"VOTE_POSTGRES_DBNAME": empty_database})
    assert status.returncode == 0, status.stderr
    assert status.stdout.split("\n")[:-1] == [f"{v} {n} applied" for v, n in files], status.stdout

    again = run_vote(["migrate", "up", "--config", CONFIG], env={"VOTE_POSTGRES_DBNAME": empty_database})
    assert again.returncode == 0 and again.stdout.strip() == "migrations: up to date", (again.stdout, again.stderr)


def test_failing_migration_is_rolled_back_and_reported(empty_database, tmp_path):
    files = migration_files()
    for version, name in files:
        (tmp_path / f"{version}__{name}.sql").write_text(open(os.path.join(MIGRATIONS, f"{version}__{name}.sql")).read())
    broken = f"V{int(files[-1][0][1:]) + 1:03d}"
    (tmp_path / f"{broken}__broken.sql").write_text(
        "CREATE TABLE half_done (id int);\nSELECT * FROM no_such_table_anywhere;\n")
    env = {"VOTE_POSTGRES_DBNAME": empty_database, "VOTE_POSTGRES_MIGRATIONS_DIR": str(tmp_path)}

    result = run_vote(["migrate", "up", "--config", CONFIG], env=env)
    assert result.returncode != 0, result.stdout
    assert f"{broken}__broken" in result.stderr, result.stderr
    conn = psycopg2.connect(dbname=empty_database, **PG)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT version FROM schema_migrations ORDER BY version")
            assert [r[0] for r in cur.fetchall()] == [v for v, _ in files]
            cur.execute("SELECT to_regclass('half_done')")
            assert cur.fetchone() == (None,), "the failed migration left a table behind"
            # The migration lock was released: another run can take it (and fails the same way, not hangs).
            cur.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")
            assert cur.fetchone() == (0,)
    finally:
        conn.close()
    status = run_vote(["migrate", "status", "--config", CONFIG], env=env)
    assert status.returncode == 0, status.stderr
    assert status.stdout.split("\n")[-2] == f"{broken} broken pending", status.stdout


def test_migrate_status_on_the_test_database_lists_all_applied(database):
    result = run_vote(["migrate", "status", "--config", CONFIG], env={"VOTE_POSTGRES_DBNAME": database})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:-1] == [f"{v} {n} applied" for v, n in migration_files()], result.stdout


def test_a_second_server_on_a_port_in_use_refuses_to_start(make_server, database):
    """The threads of one server share their port (SO_REUSEPORT); a second server on that port
    must not silently take half of its connections."""
    first = make_server(name="port-owner")
    result = run_vote(["serve", "--config", CONFIG],
                      env={"VOTE_POSTGRES_DBNAME": database, "VOTE_SERVER_PORT": str(first.port)}, timeout=30)
    assert result.returncode == 1, (result.stdout[-2000:], result.stderr)
    assert f"port {first.port} on 127.0.0.1 is already in use" in result.stderr, result.stderr
    for _ in range(20):  # every connection still reaches the first server
        assert first.request("GET", "/healthz").status == 200


@pytest.mark.parametrize("port", ["0", "8099"])
def test_serve_on_an_address_it_cannot_bind_exits_with_a_clear_error(database, port):
    """192.0.2.1 (TEST-NET-1) is no address of this machine."""
    result = run_vote(["serve", "--config", CONFIG],
                      env={"VOTE_POSTGRES_DBNAME": database, "VOTE_SERVER_HOST": "192.0.2.1", "VOTE_SERVER_PORT": port},
                      timeout=30)
    assert result.returncode == 1, (result.stdout[-2000:], result.stderr)
    assert f"error: cannot listen on 192.0.2.1:{port}: Cannot assign requested address" in result.stderr, result.stderr


def test_migrate_against_unreachable_postgres_fails_cleanly():
    result = run_vote(["migrate", "up", "--config", CONFIG],
                      env={"VOTE_POSTGRES_PORT": "1", "VOTE_POSTGRES_CONNECT_TIMEOUT": "2s"}, timeout=30)
    assert result.returncode != 0
    assert "postgres" in result.stderr.lower(), result.stderr


def test_version_prints_the_version():
    result = run_vote(["version"])
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"vote \d+\.\d+\.\d+\S*\n", result.stdout), result.stdout


def test_unknown_subcommand_exits_non_zero():
    result = run_vote(["frobnicate"])
    assert result.returncode != 0


def test_missing_config_file_stops_serve():
    result = run_vote(["serve", "--config", "/nonexistent/vote.yaml"])
    assert result.returncode != 0
    assert "/nonexistent/vote.yaml" in result.stderr, result.stderr


def test_unknown_config_key_stops_serve(database):
    text = open(CONFIG).read().replace("server:\n", "server:\n  bogus_setting: 1\n", 1)
    assert "bogus_setting" in text
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(text)
    try:
        result = run_vote(["serve", "--config", f.name], env={"VOTE_POSTGRES_DBNAME": database})
    finally:
        os.unlink(f.name)
    assert result.returncode != 0
    assert "server.bogus_setting" in result.stderr, result.stderr


def test_unknown_config_section_stops_serve(database):
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(open(CONFIG).read() + "\nnosuchsection:\n  key: 1\n")
    try:
        result = run_vote(["serve", "--config", f.name], env={"VOTE_POSTGRES_DBNAME": database})
    finally:
        os.unlink(f.name)
    assert result.returncode != 0
    assert "nosuchsection" in result.stderr, result.stderr


@pytest.mark.parametrize("var,value,key", [
    ("VOTE_SERVER_PORT", "eighty", "server.port"),
    ("VOTE_SERVER_PORT", "70000", "server.port"),
    ("VOTE_SERVER_IDLE_TIMEOUT", "5 parsecs", "server.idle_timeout"),
    ("VOTE_RATELIMIT_ENABLED", "maybe", "ratelimit.enabled"),
    ("VOTE_VOTES_DAILY_LIMIT", "-5", "votes.daily_limit"),
    ("VOTE_SERVER_ENV", "staging", "server.env"),
])
def test_bad_environment_value_stops_serve(database, var, value, key):
    result = run_vote(["serve", "--config", CONFIG], env={"VOTE_POSTGRES_DBNAME": database, var: value})
    assert result.returncode != 0
    assert key in result.stderr or var in result.stderr, result.stderr


def test_production_refuses_default_jwt_secret(database):
    result = run_vote(["serve", "--config", CONFIG],
                      env={"VOTE_POSTGRES_DBNAME": database, "VOTE_SERVER_ENV": "production"})
    assert result.returncode != 0
    assert "jwt.secret_key" in result.stderr, result.stderr


def test_production_refuses_default_database_password_even_with_a_strong_jwt_secret(database):
    result = run_vote(["serve", "--config", CONFIG],
                      env={"VOTE_POSTGRES_DBNAME": database, "VOTE_SERVER_ENV": "production",
                           "VOTE_JWT_SECRET_KEY": "k" * 48,
                           # the shipped default (the test stack's own password is random)
                           "VOTE_POSTGRES_PASSWORD": "postgres"})
    assert result.returncode != 0
    assert "postgres.password" in result.stderr, result.stderr


def test_a_function_is_applied_again_when_its_text_differs_from_the_applied_one(empty_database):
    env = {"VOTE_POSTGRES_DBNAME": empty_database}
    assert run_vote(["migrate", "up", "--config", CONFIG], env=env).returncode == 0
    conn = psycopg2.connect(dbname=empty_database, **PG)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT name FROM schema_functions ORDER BY name")
            assert [r[0] for r in cur.fetchall()] == function_files()
            # As if cast_votes.sql had changed since it was applied, and someone broke it by hand.
            cur.execute("UPDATE schema_functions SET checksum = 'old' WHERE name = 'cast_votes'")
            cur.execute("CREATE OR REPLACE FUNCTION skip_poll(p_user bigint, p_poll bigint) "
                        "RETURNS TABLE (poll_exists boolean, voted boolean, answer_seq bigint) "
                        "LANGUAGE sql AS 'SELECT false, false, NULL::bigint'")
            again = run_vote(["migrate", "up", "--config", CONFIG], env=env)
            # Only the function whose recorded text differs is applied again.
            assert again.returncode == 0 and again.stdout.split() == ["migrations:", "applied", "function",
                                                                     "cast_votes"], again.stdout
            cur.execute("SELECT prosrc FROM pg_proc WHERE proname = 'cast_votes'")
            assert "pg_advisory_xact_lock" in cur.fetchone()[0]
    finally:
        conn.close()
