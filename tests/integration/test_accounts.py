"""Accounts: registration, login, the signed-in user, tokens, password changes and the acting user."""
import base64
import hashlib
import hmac
import json
import re
import time
import uuid
from datetime import datetime, timezone

import pytest

from conftest import parallel

DEV_SECRET = b"dev-secret-change-me"
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z")


# ---------------------------------------------------------------------------------------------
# helpers


def unique(prefix="acc"):
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def register(server, username=None, email=None, password="password123"):
    username = unique() if username is None else username
    email = f"{username}@example.com" if email is None else email
    return server.request("POST", "/api/auth/register", {"username": username, "email": email, "password": password})


def login(server, email, password):
    return server.request("POST", "/api/auth/login", {"email": email, "password": password})


def parse_time(text):
    assert RFC3339.fullmatch(text), text
    return datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)


def assert_user(body, username=None, email=None, user_id=None):
    assert set(body) == {"id", "username", "email", "createdAt"}, body
    assert isinstance(body["id"], int) and body["id"] > 0, body
    if user_id is not None:
        assert body["id"] == user_id
    if username is not None:
        assert body["username"] == username
    if email is not None:
        assert body["email"] == email
    created = parse_time(body["createdAt"])
    assert abs((datetime.now(timezone.utc) - created).total_seconds()) < 3600, body


def assert_error(resp, status, code):
    assert resp.status == status, resp
    assert resp.json and set(resp.json) == {"error"}, resp
    assert resp.json["error"]["code"] == code, resp
    assert resp.json["error"]["message"], resp
    return resp.json["error"]


def assert_validation(resp, *fields):
    err = assert_error(resp, 400, "validation_failed")
    got = {d["field"] for d in err.get("details", [])}
    for field in fields:
        assert field in got, f"no detail for {field}: {resp}"
    return err


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def forge(claims, key=DEV_SECRET, alg="HS256", header=None):
    header = header or {"alg": alg, "typ": "JWT"}
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}.get(alg)
    signature = b64url(hmac.new(key, signing_input.encode(), digest).digest()) if digest else ""
    return f"{signing_input}.{signature}"


def claims_for(user_id, **overrides):
    now = int(time.time())
    claims = {"sub": str(user_id), "iat": now, "exp": now + 3600, "iss": "vote"}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def me(server, token, **kw):
    return server.request("GET", "/api/users/me", token=token, **kw)


def stored_user(db, user_id):
    rows = db("SELECT username, email, password_hash FROM users WHERE id = %s", user_id)
    assert len(rows) == 1
    return rows[0]


# ---------------------------------------------------------------------------------------------
# register, login, me


def test_register_login_me_round_trip(server, db):
    username = unique("Round")
    email = f"{username}@Example.COM"
    resp = register(server, username, email, "correct horse battery")
    assert resp.status == 201, resp
    assert set(resp.json) == {"user", "token", "expiresAt"}, resp
    user = resp.json["user"]
    assert_user(user, username=username, email=email.lower())
    expires = parse_time(resp.json["expiresAt"])
    assert 23 * 3600 < (expires - datetime.now(timezone.utc)).total_seconds() <= 24 * 3600 + 5

    # The token is an HS256 JWT for this user, issued by "vote".
    header_b64, payload_b64, _ = resp.json["token"].split(".")
    assert json.loads(b64url_decode(header_b64))["alg"] == "HS256"
    claims = json.loads(b64url_decode(payload_b64))
    assert claims["sub"] == str(user["id"]) and claims["iss"] == "vote"
    assert claims["exp"] - claims["iat"] == 24 * 3600
    assert claims["exp"] == int(expires.timestamp())

    # The stored row: email lower-cased, a salted Argon2id hash, never the password.
    stored_name, stored_email, stored_hash = stored_user(db, user["id"])
    assert (stored_name, stored_email) == (username, email.lower())
    assert stored_hash.startswith("$argon2id$") and "correct horse battery" not in stored_hash

    resp = me(server, resp.json["token"])
    assert resp.status == 200, resp
    assert resp.json == {**user, "votesToday": 0, "votesRemainingToday": 100}

    # Login with the email in any case.
    resp = login(server, email.upper(), "correct horse battery")
    assert resp.status == 200, resp
    assert set(resp.json) == {"user", "token", "expiresAt"}
    assert resp.json["user"] == user
    parse_time(resp.json["expiresAt"])
    resp = me(server, resp.json["token"])
    assert resp.status == 200 and resp.json["id"] == user["id"], resp


def test_registered_user_is_stored_once(server, db):
    resp = register(server)
    assert resp.status == 201, resp
    rows = db("SELECT count(*) FROM users WHERE id = %s", resp.json["user"]["id"])
    assert rows == [(1,)]


def test_two_users_get_different_ids_and_tokens(server):
    a, b = server.register(), server.register()
    assert a.id != b.id and a.token != b.token
    assert me(server, a.token).json["id"] == a.id
    assert me(server, b.token).json["id"] == b.id


# ---------------------------------------------------------------------------------------------
# validation rules


@pytest.mark.parametrize("username", [
    "abc", "ABC_def_123", "___", "x" * 32, "A1_",
])
def test_valid_usernames_are_accepted(server, username):
    # Unique per run: the boundary names get a random suffix within their length.
    if len(username) > 6:
        suffix = uuid.uuid4().hex[:6]
        username = username[: len(username) - 6] + suffix
    else:
        username = username + uuid.uuid4().hex[: 3]
    resp = register(server, username, f"{unique()}@example.com")
    assert resp.status == 201, resp
    assert resp.json["user"]["username"] == username


def test_username_of_exactly_3_and_32_characters_is_accepted(server):
    for length in (3, 32):
        for _ in range(20):  # 3-character names can collide with earlier runs' names
            name = uuid.uuid4().hex[:length].ljust(length, "z")
            resp = register(server, name, f"{unique()}@example.com")
            if resp.status != 409:
                break
        assert resp.status == 201, (length, resp)
        assert resp.json["user"]["username"] == name


@pytest.mark.parametrize("username", [
    "ab", "x" * 33, "has-dash", "has space", "dot.ted", "ünïcode", "emoji😀x", "", "semi;colon", " lead",
    "trail ", "tab\tname",
])
def test_invalid_usernames_are_refused(server, db, username):
    email = f"{unique()}@example.com"
    resp = register(server, username, email)
    assert_validation(resp, "username")
    assert db("SELECT count(*) FROM users WHERE email = %s", email) == [(0,)]


@pytest.mark.parametrize("email", [
    "plain", "no-at.example.com", "a@b", "two@@example.com", "a@b@example.com", "sp ace@example.com",
    "@example.com", "local@", "local@.example.com", "local@example.com.", "local@exa..mple.com",
    "loc(al@example.com", "local@exa_mple.com", "", "x" * 65 + "@example.com",
    "a@" + "b" * 250 + ".com",
])
def test_invalid_emails_are_refused(server, db, email):
    resp = register(server, unique(), email)
    assert_validation(resp, "email")
    assert db("SELECT count(*) FROM users WHERE email = %s", email.lower()) == [(0,)]


def test_long_but_valid_email_is_accepted(server):
    local = uuid.uuid4().hex + "x" * 32  # 64 characters, the most a local part may have
    email = f"{local}@{'d' * 63}.{'e' * 60}.{'f' * 60}.com"  # 254 characters in all
    assert len(email) == 254
    resp = register(server, unique(), email)
    assert resp.status == 201, resp
    assert resp.json["user"]["email"] == email


def test_email_is_stored_lower_cased(server, db):
    name = unique()
    resp = register(server, name, f"{name.upper()}@MiXeD.Example.ORG")
    assert resp.status == 201, resp
    expected = f"{name.lower()}@mixed.example.org"
    assert resp.json["user"]["email"] == expected
    assert stored_user(db, resp.json["user"]["id"])[1] == expected


@pytest.mark.parametrize("password,ok", [
    ("a" * 7, False), ("a" * 8, True), ("a" * 128, True), ("a" * 129, False), ("", False),
    # Length is in characters, not bytes.
    ("é" * 7, False), ("é" * 8, True), ("日本語の秘密の言葉", True), ("é" * 128, True), ("é" * 129, False),
])
def test_password_length_rule(server, db, password, ok):
    name = unique()
    resp = register(server, name, password=password)
    if ok:
        assert resp.status == 201, resp
        assert login(server, f"{name}@example.com", password).status == 200
    else:
        assert_validation(resp, "password")
        assert db("SELECT count(*) FROM users WHERE username = %s", name) == [(0,)]


@pytest.mark.parametrize("body,fields", [
    ({}, ["username", "email", "password"]),
    ({"email": "x@example.com", "password": "password123"}, ["username"]),
    ({"username": "someone_ok", "password": "password123"}, ["email"]),
    ({"username": "someone_ok", "email": "x@example.com"}, ["password"]),
    ({"username": 12345, "email": "x@example.com", "password": "password123"}, ["username"]),
    ({"username": "someone_ok", "email": ["x@example.com"], "password": "password123"}, ["email"]),
    ({"username": "someone_ok", "email": "x@example.com", "password": 12345678}, ["password"]),
    ({"username": "ab", "email": "bad", "password": "short"}, ["username", "email", "password"]),
])
def test_missing_or_mistyped_fields_are_validation_failed(server, body, fields):
    assert_validation(server.request("POST", "/api/auth/register", body), *fields)


@pytest.mark.parametrize("body", [{}, {"email": "a@example.com"}, {"password": "password123"},
                                  {"email": 5, "password": "password123"}])
def test_login_with_missing_fields_is_400(server, body):
    resp = server.request("POST", "/api/auth/login", body)
    assert_error(resp, 400, "validation_failed")


# ---------------------------------------------------------------------------------------------
# uniqueness


def test_taken_email_is_409_in_any_case(server, db):
    first = server.register()
    for variant in (first.email, first.email.upper(), first.email.capitalize(), f"  {first.email}  "):
        resp = register(server, unique(), variant)
        assert_error(resp, 409, "email_taken")
    assert db("SELECT count(*) FROM users WHERE lower(email) = %s", first.email) == [(1,)]


def test_taken_username_is_409_in_any_case(server, db):
    first = server.register()
    for variant in (first.username, first.username.upper(), first.username.swapcase()):
        resp = register(server, variant, f"{unique()}@example.com")
        assert_error(resp, 409, "username_taken")
    assert db("SELECT count(*) FROM users WHERE lower(username) = lower(%s)", first.username) == [(1,)]


def test_concurrent_registrations_of_one_email_give_one_success(server, db):
    email = f"{unique('race')}@example.com"

    def attempt(i):
        return register(server, unique(f"race{i}"), email)

    results = parallel(attempt, range(10), workers=10)
    statuses = sorted(r.status for r in results)
    assert statuses == [201] + [409] * 9, results
    assert all(r.json["error"]["code"] == "email_taken" for r in results if r.status == 409), results
    assert db("SELECT count(*) FROM users WHERE email = %s", email) == [(1,)]


def test_concurrent_registrations_of_one_username_give_one_success(server, db):
    name = unique("Race")
    variants = [name, name.lower(), name.upper()] * 3 + [name]

    def attempt(username):
        return register(server, username, f"{unique()}@example.com")

    results = parallel(attempt, variants, workers=10)
    assert sorted(r.status for r in results) == [201] + [409] * 9, results
    assert all(r.json["error"]["code"] == "username_taken" for r in results if r.status == 409), results
    assert db("SELECT count(*) FROM users WHERE lower(username) = lower(%s)", name) == [(1,)]


# ---------------------------------------------------------------------------------------------
# login failures


def test_wrong_password_and_unknown_email_answer_identically(server):
    u = server.register()
    wrong = login(server, u.email, "not-the-password")
    unknown = login(server, f"{unique('ghost')}@example.com", "not-the-password")
    assert_error(wrong, 401, "invalid_credentials")
    assert_error(unknown, 401, "invalid_credentials")
    assert wrong.raw == unknown.raw
    strip = {"x-request-id", "date", "x-ratelimit-remaining", "x-ratelimit-reset"}
    assert sorted((k.lower(), v) for k, v in wrong.headers if k.lower() not in strip) == \
        sorted((k.lower(), v) for k, v in unknown.headers if k.lower() not in strip)


def test_password_is_case_sensitive_at_login(server):
    u = server.register(password="PassWord123")
    assert_error(login(server, u.email, "password123"), 401, "invalid_credentials")
    assert login(server, u.email, "PassWord123").status == 200


# ---------------------------------------------------------------------------------------------
# tokens


def test_forged_token_with_the_dev_secret_is_accepted(server, user):
    # The control for the refusals below: a correctly made token works.
    resp = me(server, forge(claims_for(user.id)))
    assert resp.status == 200 and resp.json["id"] == user.id, resp


def test_bearer_prefix_is_case_insensitive(server, user):
    resp = server.request("GET", "/api/users/me", headers={"Authorization": f"bearer {user.token}"})
    assert resp.status == 200, resp


def _bad_tokens(user_id, good_token):
    now = int(time.time())
    header, payload, signature = good_token.split(".")
    return {
        "expired": forge(claims_for(user_id, iat=now - 7200, exp=now - 3600)),
        "expired-just-now": forge(claims_for(user_id, iat=now - 100, exp=now - 2)),
        "other-key": forge(claims_for(user_id), key=b"some-other-secret-key"),
        "alg-none": forge(claims_for(user_id), alg="none"),
        "alg-none-with-signature": f"{b64url(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}.{payload}.{signature}",
        "hs512": forge(claims_for(user_id), alg="HS512"),
        "truncated": good_token[:-5],
        "truncated-two-parts": f"{header}.{payload}",
        "tampered-subject": f"{header}.{b64url(json.dumps(claims_for(user_id + 1)).encode())}.{signature}",
        "wrong-issuer": forge(claims_for(user_id, iss="someone-else")),
        "no-issuer": forge(claims_for(user_id, iss=None)),
        "no-expiry": forge(claims_for(user_id, exp=None)),
        "no-subject": forge(claims_for(user_id, sub=None)),
        "non-numeric-subject": forge(claims_for(user_id, sub="alice")),
        "exp-as-string": forge(claims_for(user_id, exp=str(now + 3600))),
        "sub-as-number": forge(claims_for(user_id, sub=user_id)),
        "signature-of-other-token": f"{header}.{b64url(json.dumps(claims_for(user_id, exp=now + 99999)).encode())}"
                                    f".{signature}",
        "garbage": "not.a.jwt",
        "empty-bearer": "",
    }


BAD_TOKEN_NAMES = list(_bad_tokens(1, "a.b.c"))


@pytest.mark.parametrize("name", BAD_TOKEN_NAMES)
def test_bad_tokens_are_401_unauthorized_with_www_authenticate(server, user, name):
    token = _bad_tokens(user.id, user.token)[name]
    resp = server.request("GET", "/api/users/me", headers={"Authorization": f"Bearer {token}"})
    assert_error(resp, 401, "unauthorized")
    assert resp.header("WWW-Authenticate") is not None and resp.header("WWW-Authenticate").startswith("Bearer"), \
        resp.headers


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer"},
                                     {"Authorization": "Token abc"}])
def test_missing_token_is_401_on_every_authenticated_endpoint(server, headers):
    for method, path, body in (("GET", "/api/users/me", None), ("PATCH", "/api/users/me", {"username": "zzz_1"}),
                               ("POST", "/api/users/me/password", {"currentPassword": "a" * 8,
                                                                   "newPassword": "b" * 8}),
                               ("GET", "/api/polls", None), ("GET", "/api/polls/1", None)):
        resp = server.request(method, path, body, headers=headers)
        assert_error(resp, 401, "unauthorized")
        assert (resp.header("WWW-Authenticate") or "").startswith("Bearer"), (method, path, resp.headers)


def test_token_in_the_query_string_is_only_for_websockets(server, user):
    resp = server.request("GET", f"/api/users/me?token={user.token}")
    assert_error(resp, 401, "unauthorized")


def test_valid_token_of_a_user_that_does_not_exist_is_401(server, db):
    missing = db("SELECT coalesce(max(id), 0) + 1000000 FROM users")[0][0]
    resp = me(server, forge(claims_for(missing)))
    assert_error(resp, 401, "unauthorized")
    assert (resp.header("WWW-Authenticate") or "").startswith("Bearer")


# ---------------------------------------------------------------------------------------------
# secrets never leave the server


def test_password_never_appears_in_responses_or_log(server):
    secrets = [f"Sekr1t-{uuid.uuid4().hex}" for _ in range(4)]
    too_long = "L0ng-" + uuid.uuid4().hex + "x" * 120
    name = unique("secret")
    email = f"{name}@example.com"
    responses = [
        register(server, name, email, secrets[0]),
        register(server, name, email, secrets[0]),  # 409
        register(server, "no", "bad", too_long),  # 400 on every field
        login(server, email, secrets[0]),
        login(server, email, secrets[1]),  # wrong
        login(server, f"ghost-{email}", secrets[1]),  # unknown
        server.request("POST", "/api/auth/login", raw=f'{{"email": "{email}", "password": "{secrets[2]}"'.encode()),
    ]
    token = responses[0].json["token"]
    responses += [
        server.request("POST", "/api/users/me/password", {"currentPassword": secrets[1], "newPassword": secrets[2]},
                       token=token),  # wrong current
        server.request("POST", "/api/users/me/password", {"currentPassword": secrets[0], "newPassword": "short"},
                       token=token),  # too short
        server.request("POST", "/api/users/me/password", {"currentPassword": secrets[0], "newPassword": secrets[3]},
                       token=token),  # ok
        me(server, token),
        server.request("PATCH", "/api/users/me", {"username": unique("secret")}, token=token),
        login(server, email, secrets[3]),
    ]
    assert [r.status for r in responses] == [201, 409, 400, 200, 401, 401, 400, 403, 400, 204, 200, 200, 200], responses
    for r in responses:
        text = r.raw + "".join(f"{k}: {v}\n" for k, v in r.headers)
        for secret in secrets + [too_long]:
            assert secret not in text, r
        assert "argon2" not in text and "password_hash" not in text.lower(), r
    log = server.read_log()
    for secret in secrets + [too_long]:
        assert secret not in log, f"password {secret} appears in the server log"
    assert "$argon2" not in log


# ---------------------------------------------------------------------------------------------
# password change


def change_password(server, token, current, new, **kw):
    return server.request("POST", "/api/users/me/password", {"currentPassword": current, "newPassword": new},
                          token=token, **kw)


def test_password_change_requires_the_current_password(server, db):
    u = server.register(password="original-pass")
    before = stored_user(db, u.id)[2]
    resp = change_password(server, u.token, "wrong-current", "brand-new-pass")
    assert_error(resp, 403, "invalid_credentials")
    assert stored_user(db, u.id)[2] == before
    assert login(server, u.email, "original-pass").status == 200
    assert_error(login(server, u.email, "brand-new-pass"), 401, "invalid_credentials")


def test_password_change_switches_login_and_keeps_old_tokens(server, db):
    u = server.register(password="original-pass")
    old_token = u.token
    resp = change_password(server, u.token, "original-pass", "brand-new-pass")
    assert resp.status == 204, resp
    assert resp.raw == ""
    assert_error(login(server, u.email, "original-pass"), 401, "invalid_credentials")
    resp = login(server, u.email, "brand-new-pass")
    assert resp.status == 200 and resp.json["user"]["id"] == u.id, resp
    # No revocation: the token issued before the change still works until it expires.
    resp = me(server, old_token)
    assert resp.status == 200 and resp.json["id"] == u.id, resp
    assert stored_user(db, u.id)[2].startswith("$argon2id$")


@pytest.mark.parametrize("body,field", [
    ({"currentPassword": "original-pass", "newPassword": "short"}, "newPassword"),
    ({"currentPassword": "original-pass", "newPassword": "x" * 129}, "newPassword"),
    ({"currentPassword": "original-pass"}, "newPassword"),
    ({"newPassword": "brand-new-pass"}, "currentPassword"),
    ({"currentPassword": "original-pass", "newPassword": 12345678}, "newPassword"),
])
def test_password_change_validation(server, body, field):
    u = server.register(password="original-pass")
    resp = server.request("POST", "/api/users/me/password", body, token=u.token)
    assert_validation(resp, field)
    assert login(server, u.email, "original-pass").status == 200


# ---------------------------------------------------------------------------------------------
# PATCH /api/users/me


def patch_me(server, token, body, **kw):
    return server.request("PATCH", "/api/users/me", body, token=token, **kw)


def test_patch_me_changes_username_and_email(server, db):
    u = server.register()
    new_name = unique("Renamed")
    new_email = f"{new_name}@New-Domain.EXAMPLE.com"
    resp = patch_me(server, u.token, {"username": new_name, "email": new_email})
    assert resp.status == 200, resp
    assert_user(resp.json, username=new_name, email=new_email.lower(), user_id=u.id)
    assert stored_user(db, u.id)[:2] == (new_name, new_email.lower())
    got = me(server, u.token)
    assert got.status == 200 and got.json["username"] == new_name and got.json["email"] == new_email.lower()
    # Login follows the email; the old one is gone.
    assert login(server, new_email, u.password).status == 200
    assert_error(login(server, u.email, u.password), 401, "invalid_credentials")


def test_patch_me_with_one_field_keeps_the_other(server):
    u = server.register()
    new_name = unique("only")
    resp = patch_me(server, u.token, {"username": new_name})
    assert resp.status == 200 and resp.json["username"] == new_name and resp.json["email"] == u.email, resp
    new_email = f"{unique()}@example.com"
    resp = patch_me(server, u.token, {"email": new_email})
    assert resp.status == 200 and resp.json["username"] == new_name and resp.json["email"] == new_email, resp


def test_patch_me_with_empty_body_changes_nothing(server):
    u = server.register()
    resp = patch_me(server, u.token, {})
    assert resp.status == 200, resp
    assert resp.json["username"] == u.username and resp.json["email"] == u.email


def test_patch_me_may_change_the_case_of_ones_own_username(server):
    u = server.register()
    resp = patch_me(server, u.token, {"username": u.username.upper()})
    assert resp.status == 200 and resp.json["username"] == u.username.upper(), resp


@pytest.mark.parametrize("body,field", [
    ({"username": "ab"}, "username"), ({"username": "x" * 33}, "username"), ({"username": "bad name"}, "username"),
    ({"username": 7}, "username"), ({"email": "not-an-email"}, "email"), ({"email": "a@b"}, "email"),
    ({"email": ""}, "email"), ({"username": "ok_name_1", "email": "bad"}, "email"),
])
def test_patch_me_validation(server, db, body, field):
    u = server.register()
    assert_validation(patch_me(server, u.token, body), field)
    assert stored_user(db, u.id)[:2] == (u.username, u.email)


def test_patch_me_conflicts(server, db):
    a, b = server.register(), server.register()
    assert_error(patch_me(server, b.token, {"username": a.username.upper()}), 409, "username_taken")
    assert_error(patch_me(server, b.token, {"email": a.email.upper()}), 409, "email_taken")
    assert_error(patch_me(server, b.token, {"username": unique(), "email": a.email}), 409, "email_taken")
    assert stored_user(db, b.id)[:2] == (b.username, b.email)


def test_concurrent_renames_to_one_username_give_one_success(server, db):
    users = [server.register() for _ in range(8)]
    target = unique("Wanted")

    def rename(i):
        return patch_me(server, users[i].token, {"username": target if i % 2 else target.upper()})

    results = parallel(rename, range(len(users)), workers=8)
    assert sorted(r.status for r in results) == [200] + [409] * 7, results
    assert all(r.json["error"]["code"] == "username_taken" for r in results if r.status == 409)
    assert db("SELECT count(*) FROM users WHERE lower(username) = lower(%s)", target) == [(1,)]


# ---------------------------------------------------------------------------------------------
# the acting user is the token's subject


def test_user_id_differing_from_the_token_is_403(server, db):
    u, other = server.register(), server.register()
    for resp in (
        server.request("GET", f"/api/users/me?userId={other.id}", token=u.token),
        server.request("GET", "/api/users/me?userId=abc", token=u.token),
        patch_me(server, u.token, {"userId": other.id, "username": unique()}),
        patch_me(server, u.token, {"userId": str(other.id), "username": unique()}),
        server.request("POST", "/api/users/me/password",
                       {"userId": other.id, "currentPassword": u.password, "newPassword": "brand-new-pass"},
                       token=u.token),
        server.request("GET", f"/api/polls?userId={other.id}", token=u.token),
    ):
        assert_error(resp, 403, "forbidden")
    assert stored_user(db, u.id)[:2] == (u.username, u.email)
    assert login(server, u.email, u.password).status == 200


def test_user_id_equal_to_the_token_is_accepted(server, db):
    u = server.register()
    resp = server.request("GET", f"/api/users/me?userId={u.id}", token=u.token)
    assert resp.status == 200 and resp.json["id"] == u.id, resp
    new_name = unique("same")
    resp = patch_me(server, u.token, {"userId": u.id, "username": new_name})
    assert resp.status == 200 and resp.json["username"] == new_name, resp
    newer = unique("same")
    resp = patch_me(server, u.token, {"userId": str(u.id), "username": newer})
    assert resp.status == 200 and resp.json["username"] == newer, resp
    resp = server.request("GET", f"/api/polls?userId={u.id}", token=u.token)
    assert resp.status == 200, resp
    assert stored_user(db, u.id)[0] == newer


def test_user_id_check_uses_the_token_not_the_body(server):
    # Someone else's id in the body cannot make the request act as them, even with the right password.
    victim, attacker = server.register(), server.register()
    resp = server.request("POST", "/api/users/me/password",
                          {"userId": victim.id, "currentPassword": victim.password, "newPassword": "hijacked-pass"},
                          token=attacker.token)
    assert_error(resp, 403, "forbidden")
    assert login(server, victim.email, victim.password).status == 200
    assert_error(login(server, victim.email, "hijacked-pass"), 401, "invalid_credentials")
