"""Integration test harness: real PostgreSQL, Redis and RabbitMQ (started by scripts/stack),
a fresh database per test session, and real `vote serve` processes on loopback port 0."""
import http.client
import json
import os
import signal
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

    def request(self, method, path, body=None, token=None, headers=None, raw=None, timeout=30):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
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


@pytest.fixture(scope="session")
def database():
    name = f"vote_it_{os.getpid()}"
    admin = psycopg2.connect(dbname="postgres", **PG)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        cur.execute(f'CREATE DATABASE "{name}"')
    env = dict(os.environ, VOTE_POSTGRES_DBNAME=name)
    subprocess.run([BIN, "migrate", "up", "--config", os.path.join(ROOT, "config", "config.yaml")],
                   cwd=ROOT, env=env, check=True, capture_output=True)
    redis_lib.Redis(port=REDIS_PORT, db=REDIS_DB).flushdb()
    yield name
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


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


@pytest.fixture
def user(server):
    return server.register()


@pytest.fixture
def redis_client():
    return redis_lib.Redis(port=REDIS_PORT, db=REDIS_DB)
