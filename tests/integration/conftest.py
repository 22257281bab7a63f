"""Integration test harness: real PostgreSQL, Redis and RabbitMQ (started by scripts/stack),
a fresh database per test session, and real `vote serve` processes on loopback port 0."""
import atexit
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket as socket_lib
import subprocess
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import psycopg2
import pytest
import redis as redis_lib

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("VOTE_BIN", os.path.join(ROOT, "build", "debug-asan", "vote"))
PG = dict(host=os.environ.get("VOTE_POSTGRES_HOST", "127.0.0.1"),
          port=int(os.environ.get("VOTE_POSTGRES_PORT", "5432")),
          user=os.environ.get("VOTE_POSTGRES_USER", "postgres"),
          password=os.environ.get("VOTE_POSTGRES_PASSWORD", "postgres"))
REDIS_PORT = int(os.environ.get("VOTE_REDIS_PORT", "6379"))
# Tests use their own Redis database so that `make run` data is never touched.
REDIS_DB = 9


# Per-server scratch directories (port file, log), removed when the test session ends.
_TEMP_DIRS = []
atexit.register(lambda: [shutil.rmtree(d, ignore_errors=True) for d in _TEMP_DIRS])


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.raw = body
        try:
            self.json = json.loads(body) if body else None
        except ValueError:
            self.json = None

    def header(self, name):
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def __repr__(self):
        return f"<{self.status} {self.raw[:300]!r}>"


class Server:
    """A `vote serve` process; env overrides are VOTE_<SECTION>_<KEY> settings."""

    def __init__(self, database, env=None, name="server"):
        self.database = database
        self.extra_env = env or {}
        self.name = name
        self.proc = None
        self.port = None
        self.log_path = None

    def start(self, timeout=30):
        tmp = tempfile.mkdtemp(prefix="vote-it-")
        _TEMP_DIRS.append(tmp)
        port_file = os.path.join(tmp, "port")
        self.log_path = os.path.join(tmp, f"{self.name}.log")
        env = dict(os.environ)
        env.update({
            "VOTE_SERVER_PORT": "0",
            "VOTE_SERVER_HOST": "127.0.0.1",
            "VOTE_SERVER_PORT_FILE": port_file,
            "VOTE_SERVER_ENV": "test",
            "VOTE_SERVER_THREADS": "2",
            "VOTE_POSTGRES_DBNAME": self.database,
            "VOTE_REDIS_DB": str(REDIS_DB),
            # Argon2id at its minimum cost: tests exercise the flow, not the hash strength.
            "VOTE_AUTH_HASH_OPSLIMIT": "1",
            "VOTE_AUTH_HASH_MEMLIMIT": "8192",
            "VOTE_AUTH_HASH_QUEUE": "1024",
            # Most tests are not about rate limits; the rate limit tests set their own.
            "VOTE_RATELIMIT_USER_PER_MINUTE": "100000",
            "VOTE_RATELIMIT_IP_PER_SECOND": "100000",
            "VOTE_FEED_REFRESH_INTERVAL": "200ms",
            # Whether web/dist was built must not change what these tests see; test_web.py
            # serves a web root of its own.
            "VOTE_SERVER_WEB_ROOT": os.path.join(tmp, "no-web-client"),
            "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0",
        })
        env.update({k: str(v) for k, v in self.extra_env.items()})
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([BIN, "serve", "--config", os.path.join(ROOT, "config", "config.yaml")],
                                     cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.read_log()[-3000:]}")
            if os.path.exists(port_file) and open(port_file).read().strip():
                self.port = int(open(port_file).read().strip())
                try:
                    if self.request("GET", "/healthz").status == 200:
                        return self
                except OSError:
                    pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not start: {self.read_log()[-3000:]}")

    def read_log(self):
        with open(self.log_path) as f:
            return f.read()

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.log:
            self.log.close()
        return self.proc.returncode if self.proc else None

    def request(self, method, path, body=None, token=None, headers=None, raw=None, timeout=30, source=None):
        """`source`: a loopback address to send from (each is another client address)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout,
                                          source_address=(source, 0) if source else None)
        try:
            h = {}
            if token:
                h["Authorization"] = f"Bearer {token}"
            if body is not None:
                raw = json.dumps(body).encode()
            if raw is not None:
                h["Content-Type"] = "application/json"
            h.update(headers or {})
            conn.request(method, path, body=raw, headers=h)
            resp = conn.getresponse()
            return Response(resp.status, resp.getheaders(), resp.read().decode("utf-8", "replace"))
        finally:
            conn.close()

    # Convenience wrappers used across the suite.
    def register(self, prefix="user", password="password123"):
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        r = self.request("POST", "/api/auth/register",
                         {"username": name, "email": f"{name}@example.com", "password": password})
        assert r.status == 201, r
        return User(r.json["user"]["id"], name, f"{name}@example.com", password, r.json["token"])

    def create_poll(self, token, title=None, options=("Go", "Python", "Rust"), tags=("programming",)):
        r = self.request("POST", "/api/polls",
                         {"title": title or f"Poll {uuid.uuid4().hex[:8]}", "options": list(options),
                          "tags": list(tags)}, token=token)
        assert r.status == 201, r
        return r.json


class User:
    def __init__(self, id, username, email, password, token):
        self.id, self.username, self.email, self.password, self.token = id, username, email, password, token


def parallel(fn, items, workers=32):
    """Runs fn over items on many threads at once (real concurrent HTTP requests)."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, items))


def create_database(name):
    """Creates an empty database `name` (dropping a leftover one) and migrates it with `vote migrate up`."""
    admin = psycopg2.connect(dbname="postgres", **PG)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        cur.execute(f'CREATE DATABASE "{name}"')
    admin.close()
    env = dict(os.environ, VOTE_POSTGRES_DBNAME=name)
    subprocess.run([BIN, "migrate", "up", "--config", os.path.join(ROOT, "config", "config.yaml")],
                   cwd=ROOT, env=env, check=True, capture_output=True)


def drop_database(name):
    admin = psycopg2.connect(dbname="postgres", **PG)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture(scope="session")
def database():
    name = f"vote_it_{os.getpid()}"
    create_database(name)
    redis_lib.Redis(port=REDIS_PORT, db=REDIS_DB).flushdb()
    yield name
    drop_database(name)


@pytest.fixture(scope="session")
def db(database):
    """Runs SQL against the test database: db(sql, *params) -> rows."""
    conn = psycopg2.connect(dbname=database, **PG)
    conn.autocommit = True

    def run(sql, *params):
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else None

    yield run
    conn.close()


@pytest.fixture(scope="session")
def server(database):
    """One shared server for tests that do not need special settings."""
    s = Server(database, name="shared").start()
    yield s
    code = s.stop()
    assert code == 0, f"server exited with {code}: {s.read_log()[-3000:]}"


@pytest.fixture
def make_server(database):
    """Starts extra servers with their own settings; all are stopped after the test."""
    started = []

    def make(env=None, name="extra"):
        s = Server(database, env=env, name=name).start()
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop()


@pytest.fixture(scope="module")
def distinct_poll_ids(db):
    """Redis (poll:stats:{id}) is shared with test sessions running against other databases, whose
    poll ids also start at 1; starting ours at a random offset keeps their cached stats out of ours."""
    last = db("SELECT coalesce(max(id), 0) FROM polls")[0][0]
    if last < 1_000_000:
        db("SELECT setval(pg_get_serial_sequence('polls', 'id'), %s)", random.randrange(1, 2000) * 1_000_000)


@pytest.fixture
def user(server):
    return server.register()


@pytest.fixture
def redis_client():
    return redis_lib.Redis(port=REDIS_PORT, db=REDIS_DB)


# ---------------------------------------------------------------------------------------------
# Isolation and outages (added for the feed, rate limit and events tests).
#
# Every pytest session has its own database, but all sessions on a machine share RabbitMQ's
# vhost "/" and Redis database 9. Ids start at 1 in every database, so another session's events
# (vote.cast for "user 3, poll 7") and Redis keys (rate:user:3:api, poll:stats:7, poll:stats:hot)
# would land on this session's users and polls. Tests that count events, rate-limit budgets or
# hot polls use `isolated`: a database, a vhost and a Redis database of their own.

RABBITMQ_PORT = int(os.environ.get("VOTE_RABBITMQ_PORT", "5672"))
RABBITMQ_USER = os.environ.get("VOTE_RABBITMQ_USER", "guest")
RABBITMQ_PASSWORD = os.environ.get("VOTE_RABBITMQ_PASSWORD", "guest")
# Redis databases handed out to isolated sessions (0 is `make run`'s, 9 the shared harness').
ISOLATED_REDIS_DBS = range(10, 16)
ISOLATED_REDIS_CLAIM = "vote-it:owner"


def rabbitmqctl(*args, timeout=120, check=True):
    """Runs rabbitmqctl against the test stack's node (scripts/stack knows its name and cookie)."""
    done = subprocess.run([os.path.join(ROOT, "scripts", "stack"), "rabbitmqctl", *args],
                          capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {done.stdout} {done.stderr}")
    return done.stdout


def redis_ping(port=REDIS_PORT):
    try:
        return redis_lib.Redis(port=port, socket_timeout=1, socket_connect_timeout=1).ping()
    except redis_lib.RedisError:
        return False


def metric(s, name, **labels):
    """The value of one Prometheus sample of s's /metrics (0 when it has not been exported yet)."""
    text = s.request("GET", "/metrics").raw
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        m = re.match(r"^(\w+)(\{[^}]*\})? (\S+)$", line)
        if m and m.group(1) == name and (m.group(2) or "{}")[1:-1] == want:
            return float(m.group(3))
    return 0.0


def wait_until(predicate, timeout, interval=0.05, message="condition"):
    """Polls predicate() until it returns a truthy value (returned) or the deadline passes."""
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.time() >= deadline:
            raise AssertionError(f"{message} not reached within {timeout}s (last value: {value!r})")
        time.sleep(interval)


def stop_redis():
    """Stops the local Redis (data is not saved). Pair with start_redis() in a finally block."""
    subprocess.run(["redis-cli", "-p", str(REDIS_PORT), "shutdown", "nosave"], capture_output=True, timeout=30)
    wait_until(lambda: not redis_ping(), 20, message="Redis stopped")


def start_redis():
    """Starts the local Redis again through scripts/stack (idempotent) and waits for PONG."""
    if not redis_ping():
        subprocess.run([os.path.join(ROOT, "scripts", "stack"), "up"], cwd=ROOT, capture_output=True, timeout=180)
    wait_until(redis_ping, 30, interval=0.2, message="Redis answering")


def rabbitmq_up():
    try:
        with socket_lib.create_connection(("127.0.0.1", RABBITMQ_PORT), 1):
            return True
    except OSError:
        return False


def stop_rabbitmq():
    """Stops the RabbitMQ application (the node stays up). Pair with start_rabbitmq()."""
    rabbitmqctl("stop_app")
    wait_until(lambda: not rabbitmq_up(), 30, message="RabbitMQ stopped")


def start_rabbitmq():
    rabbitmqctl("start_app", check=False)
    rabbitmqctl("await_startup", check=False)
    if not rabbitmq_up():
        # The node itself is gone: let scripts/stack bring it back.
        subprocess.run([os.path.join(ROOT, "scripts", "stack"), "up"], cwd=ROOT, capture_output=True, timeout=300)
    wait_until(rabbitmq_up, 60, interval=0.2, message="RabbitMQ accepting connections")


class Isolated:
    """A database, a RabbitMQ vhost and a Redis database that no other pytest session uses."""

    def __init__(self, database, vhost, redis_db):
        self.database, self.vhost, self.redis_db = database, vhost, redis_db
        self.env = {"VOTE_POSTGRES_DBNAME": database, "VOTE_RABBITMQ_VHOST": vhost, "VOTE_REDIS_DB": str(redis_db)}
        self._conn = psycopg2.connect(dbname=database, **PG)
        self._conn.autocommit = True

    def db(self, sql, *params):
        with self._conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else None

    def redis(self):
        return redis_lib.Redis(port=REDIS_PORT, db=self.redis_db)

    def claim_redis(self):
        """Marks the Redis database as ours again (needed after Redis restarted without data)."""
        self.redis().set(ISOLATED_REDIS_CLAIM, self.database, ex=6 * 3600)

    def close(self):
        self._conn.close()


@pytest.fixture(scope="session")
def isolated():
    name = f"vote_it_iso_{os.getpid()}"
    create_database(name)
    rabbitmqctl("add_vhost", name)
    rabbitmqctl("set_permissions", "-p", name, RABBITMQ_USER, ".*", ".*", ".*")
    redis_db = None
    for candidate in ISOLATED_REDIS_DBS:
        r = redis_lib.Redis(port=REDIS_PORT, db=candidate)
        if r.set(ISOLATED_REDIS_CLAIM, name, nx=True, ex=6 * 3600):
            r.flushdb()
            redis_db = candidate
            break
    if redis_db is None:
        raise RuntimeError(f"no free Redis database among {list(ISOLATED_REDIS_DBS)}: keys {ISOLATED_REDIS_CLAIM} hold them")
    iso = Isolated(name, name, redis_db)
    iso.claim_redis()
    yield iso
    iso.close()
    try:
        r = redis_lib.Redis(port=REDIS_PORT, db=redis_db)
        if r.get(ISOLATED_REDIS_CLAIM) in (None, name.encode()):
            r.flushdb()
    except redis_lib.RedisError:
        pass
    rabbitmqctl("delete_vhost", name, check=False)
    drop_database(name)


@pytest.fixture
def make_isolated_server(isolated):
    """Like make_server, but the servers use the `isolated` database, vhost and Redis database."""
    started = []

    def make(env=None, name="isolated"):
        s = Server(isolated.database, env={**isolated.env, **(env or {})}, name=name).start()
        started.append(s)
        return s

    yield make
    # A server that a test did not kill must exit cleanly: a sanitizer report makes it exit non-zero.
    failures = []
    for s in started:
        killed = s.proc.poll() is not None and s.proc.returncode < 0
        code = s.stop()
        if not killed and code != 0:
            failures.append(f"{s.name} exited with {code}: {s.read_log()[-3000:]}")
    assert not failures, "\n".join(failures)


def pytest_configure(config):
    config.addinivalue_line("markers", "outage: stops a shared service (Redis, RabbitMQ) for a while; runs last in its file")
