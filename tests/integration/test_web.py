"""The web client's files served at / (caching, compression, SPA fallback, security headers),
CORS for clients served elsewhere, and one-time WebSocket tickets for browsers."""
import http.client
import json
import secrets

import pytest
import websocket

INDEX = b'<!doctype html><html lang="en"><title>Vote</title><script type="module" src="/assets/app-1a2b3c.js"></script></html>'
APP_JS = b"console.log('vote');\n" * 50


@pytest.fixture(scope="module")
def web_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("web")
    (root / "assets").mkdir()
    (root / "index.html").write_bytes(INDEX)
    (root / "assets" / "app-1a2b3c.js").write_bytes(APP_JS)
    # Stand-ins for the build's precompressed copies: the server sends them as they are.
    (root / "assets" / "app-1a2b3c.js.gz").write_bytes(b"GZIP-BYTES")
    (root / "assets" / "app-1a2b3c.js.br").write_bytes(b"BROTLI-BYTES")
    (root / "favicon.svg").write_bytes(b"<svg xmlns='http://www.w3.org/2000/svg'/>")
    return root


@pytest.fixture(scope="module")
def site(database, web_root):
    from conftest import Server
    s = Server(database, env={"VOTE_SERVER_WEB_ROOT": str(web_root),
                              "VOTE_SERVER_CORS_ORIGINS": "https://app.example,http://localhost:5173"},
               name="web").start()
    yield s
    assert s.stop() == 0


def get(s, path, headers=None, method="GET"):
    conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def test_the_app_is_served_at_the_root_with_a_strict_policy(site):
    status, h, body = get(site, "/")
    assert status == 200 and body == INDEX
    assert h["content-type"] == "text/html; charset=utf-8"
    assert h["cache-control"] == "no-cache"
    assert "script-src 'self'" in h["content-security-policy"] and "unsafe-inline" not in h["content-security-policy"]
    assert h["x-content-type-options"] == "nosniff" and h["referrer-policy"] == "no-referrer"
    assert h["etag"].startswith('"') and not h["etag"].startswith('W/')
    assert "server" not in h


def test_a_matching_if_none_match_is_304_without_a_body(site):
    _, h, _ = get(site, "/index.html")
    status, h2, body = get(site, "/index.html", {"If-None-Match": h["etag"]})
    assert status == 304 and body == b"" and h2["etag"] == h["etag"]


@pytest.mark.parametrize("accept, body, encoding", [
    ("br, gzip", b"BROTLI-BYTES", "br"),
    ("gzip, deflate", b"GZIP-BYTES", "gzip"),
    ("br;q=0, gzip", b"GZIP-BYTES", "gzip"),
    ("identity", APP_JS, None),
    (None, APP_JS, None),
])
def test_hashed_assets_are_immutable_and_sent_precompressed_as_accepted(site, accept, body, encoding):
    status, h, got = get(site, "/assets/app-1a2b3c.js", {"Accept-Encoding": accept} if accept else {})
    assert status == 200 and got == body
    assert h.get("content-encoding") == encoding
    assert h["cache-control"] == "public, max-age=31536000, immutable"
    assert h["vary"] == "Accept-Encoding"
    assert h["content-type"] == "text/javascript; charset=utf-8"


def test_each_encoding_has_its_own_strong_etag(site):
    tags = {get(site, "/assets/app-1a2b3c.js", {"Accept-Encoding": a})[1]["etag"] for a in ("br", "gzip", "identity")}
    assert len(tags) == 3


@pytest.mark.parametrize("path", ["/me", "/create", "/polls/42", "/me/"])
def test_app_routes_fall_back_to_the_app(site, path):
    status, h, body = get(site, path)
    assert status == 200 and body == INDEX and h["cache-control"] == "no-cache"


@pytest.mark.parametrize("path", ["/missing.js", "/assets/other.css", "/api/nope", "/api/", "/../config/config.yaml",
                                  "/assets/../index.html", "/assets/%2e%2e/index.html", "/%2e%2e/%2e%2e/etc/passwd",
                                  "//etc/passwd", "/assets\\app-1a2b3c.js"])
def test_no_fallback_for_files_or_the_api_and_no_way_out_of_the_root(site, path):
    status, h, body = get(site, path)
    assert status == 404, (path, body[:200])
    assert json.loads(body)["error"]["code"] == "not_found"
    assert body != INDEX


def test_head_of_a_file_sends_its_headers_only(site):
    status, h, body = get(site, "/favicon.svg", method="HEAD")
    assert status == 200 and body == b"" and h["content-type"] == "image/svg+xml"
    assert int(h["content-length"]) == len(b"<svg xmlns='http://www.w3.org/2000/svg'/>")


def test_writes_to_the_app_paths_are_not_served_as_files(site):
    status, _, body = get(site, "/index.html", method="POST")
    assert status == 404 and b"not_found" in body


def test_without_a_built_client_the_root_is_a_clear_404(server):
    # The shared test server points at a web root that does not exist.
    status, _, body = get(server, "/")
    assert status == 404
    assert json.loads(body)["error"]["code"] == "not_found"


# ---------------------------------------------------------------------------------------------
# CORS


def test_an_allowed_origin_may_read_api_answers_and_their_headers(site):
    user = site.register()
    status, h, _ = get(site, "/api/users/me", {"Origin": "https://app.example", "Authorization": f"Bearer {user.token}"})
    assert status == 200
    assert h["access-control-allow-origin"] == "https://app.example"
    assert "X-RateLimit-Remaining" in h["access-control-expose-headers"] and h["vary"] == "Origin"


def test_another_origin_gets_no_cors_headers(site):
    user = site.register()
    status, h, _ = get(site, "/api/users/me", {"Origin": "https://evil.example", "Authorization": f"Bearer {user.token}"})
    assert status == 200 and "access-control-allow-origin" not in h


def test_a_preflight_from_an_allowed_origin_is_204_with_the_methods_and_headers(site):
    status, h, _ = get(site, "/api/polls/1/vote", {"Origin": "http://localhost:5173",
                                                   "Access-Control-Request-Method": "POST",
                                                   "Access-Control-Request-Headers": "authorization,idempotency-key"},
                       method="OPTIONS")
    assert status == 204
    assert h["access-control-allow-origin"] == "http://localhost:5173"
    assert "POST" in h["access-control-allow-methods"]
    assert "Idempotency-Key" in h["access-control-allow-headers"]


def test_a_preflight_from_another_origin_is_not_approved(site):
    status, h, _ = get(site, "/api/polls", {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
                       method="OPTIONS")
    assert status == 405 and "access-control-allow-origin" not in h


# ---------------------------------------------------------------------------------------------
# WebSocket tickets


def ticket_for(s, user):
    r = s.request("POST", "/api/ws/ticket", token=user.token)
    assert r.status == 201, r
    assert set(r.json) == {"ticket", "expiresAt"} and r.json["expiresAt"].endswith("Z")
    return r.json["ticket"]


def open_ws(s, query):
    return websocket.create_connection(f"ws://127.0.0.1:{s.port}/api/ws?{query}", timeout=5)


def refused(s, query):
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        open_ws(s, query)
    return e.value.status_code


def test_a_ticket_opens_one_websocket_for_its_user(site):
    user = site.register()
    poll = site.create_poll(user.token)
    ws = open_ws(site, "ticket=" + ticket_for(site, user))
    try:
        ws.send(json.dumps({"type": "subscribe", "pollIds": [poll["id"]]}))
        # poll_created notices (of this poll too) may come first; the acknowledgement follows.
        kinds = []
        while "subscribed" not in kinds and len(kinds) < 20:
            kinds.append(json.loads(ws.recv())["type"])
        assert kinds[-1] == "subscribed" and set(kinds) <= {"subscribed", "poll_created"}, kinds
    finally:
        ws.close()


def test_a_ticket_is_good_once(site):
    user = site.register()
    ticket = ticket_for(site, user)
    open_ws(site, "ticket=" + ticket).close()
    assert refused(site, "ticket=" + ticket) == 401


@pytest.mark.parametrize("ticket", ["", "x" * 32, secrets.token_urlsafe(24), "../../etc", "%00"])
def test_an_unknown_or_malformed_ticket_is_401(site, ticket):
    assert refused(site, "ticket=" + ticket) == 401


def test_a_ticket_needs_a_token_and_expires(make_server, database):
    s = make_server(env={"VOTE_SERVER_WS_TICKET_TTL": "1s"}, name="short-tickets")
    assert s.request("POST", "/api/ws/ticket").status == 401
    user = s.register()
    ticket = ticket_for(s, user)
    import time
    time.sleep(2.2)
    assert refused(s, "ticket=" + ticket) == 401


def test_a_ticket_from_one_instance_opens_a_websocket_on_another(site, make_server):
    other = make_server(name="ticket-other")
    user = site.register()
    ws = open_ws(other, "ticket=" + ticket_for(site, user))
    ws.close()


def test_production_refuses_a_long_lived_token_in_the_url_but_takes_tickets(make_server):
    s = make_server(env={"VOTE_SERVER_ENV": "production", "VOTE_JWT_SECRET_KEY": secrets.token_hex(32)},
                    name="production")
    user = s.register()
    assert refused(s, "token=" + user.token) == 401
    open_ws(s, "ticket=" + ticket_for(s, user)).close()
    ws = websocket.create_connection(f"ws://127.0.0.1:{s.port}/api/ws", timeout=5,
                                     header=[f"Authorization: Bearer {user.token}"])
    ws.close()
