"""A little load on one `vote serve`, enough for every dashboard query to have data.

Registers users, creates polls, and for a bounded time: reads the feed, votes, skips, reads
stats and single polls, asks for hot polls, logs in, hits a missing poll (404), keeps two
WebSockets subscribed to the polls (stats pushes, poll_created), probes /readyz every 2 s like
the load balancer's health check, and lets one user run into its rate limit (429). Each other
user sends about 4 requests a second: more than a default ratelimit.user_per_minute (100)
allows for long, so tests/ops/live.py runs the server with 300. Standard
library plus python3-websocket (already a project dependency).

  load.py http://127.0.0.1:PORT [--duration 15] [--users 6] [--user-limit 100]
"""
import argparse
import http.client
import json
import random
import threading
import time
import urllib.parse
import uuid

import websocket


class Client:
    """One keep-alive HTTP connection, optionally authenticated."""

    def __init__(self, base, token=None, tally=None):
        u = urllib.parse.urlsplit(base)
        self.host, self.port = u.hostname, u.port
        self.token = token
        self.conn = None
        self.statuses = {}
        self.tally = tally or (lambda status: None)

    def request(self, method, path, body=None):
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = json.dumps(body).encode() if body is not None else None
        for attempt in range(2):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection(self.host, self.port, timeout=15)
                self.conn.request(method, path, body=data, headers=headers)
                r = self.conn.getresponse()
                raw = r.read()
                self.statuses[r.status] = self.statuses.get(r.status, 0) + 1
                self.tally(r.status)
                if r.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                try:
                    return r.status, json.loads(raw) if raw else None
                except ValueError:
                    return r.status, None
            except (OSError, http.client.HTTPException):
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
                if attempt:
                    self.statuses[0] = self.statuses.get(0, 0) + 1
                    self.tally(0)
                    return 0, None
        return 0, None


def register(base, tag):
    c = Client(base)
    name = f"ops{tag}{uuid.uuid4().hex[:10]}"
    status, body = c.request("POST", "/api/auth/register",
                             {"username": name, "email": f"{name}@example.com", "password": "correct horse battery"})
    if status != 201:
        raise RuntimeError(f"register answered {status}: {body}")
    return name, body["token"]


class Load:
    def __init__(self, base, users=6, duration=15.0, stop=None, user_limit=100, direct=None):
        self.base = base
        # Users with an odd index send to `direct` instead (the outage test: some clients
        # through the balancer, some straight to the instance).
        self.direct = direct
        self.user_limit = user_limit  # the server's ratelimit.user_per_minute
        self.n_users = users
        self.duration = duration
        self.stop = stop or threading.Event()
        self.users = []
        self.poll_ids = []
        self.ws_messages = 0
        self.counts = {}
        self.lock = threading.Lock()
        self.errors = []

    def tally(self, status):
        with self.lock:
            self.counts[status] = self.counts.get(status, 0) + 1


    def setup(self):
        results = [None] * self.n_users
        def reg(i):
            try:
                results[i] = register(self.base, i)
            except Exception as e:  # noqa: BLE001 - reported below
                self.errors.append(str(e))
        threads = [threading.Thread(target=reg, args=(i,)) for i in range(self.n_users)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.users = [r for r in results if r]
        if not self.users:
            raise RuntimeError(f"no user could register: {self.errors[:3]}")
        owner = Client(self.base, self.users[0][1], self.tally)
        for i in range(24):
            status, body = owner.request("POST", "/api/polls", {
                "title": f"Ops poll {i} {uuid.uuid4().hex[:6]}",
                "options": ["yes", "no", "maybe"],
                "tags": [random.choice(["ops", "music", "sport"])]})
            if status == 201:
                self.poll_ids.append(body["id"])
        if not self.poll_ids:
            raise RuntimeError("no poll could be created")

    def websocket(self, token):
        host = urllib.parse.urlsplit(self.base).netloc
        try:
            ws = websocket.create_connection(f"ws://{host}/api/ws", timeout=2,
                                             header=[f"Authorization: Bearer {token}"])
        except Exception as e:  # noqa: BLE001
            self.errors.append(f"websocket: {e}")
            return
        ws.send(json.dumps({"type": "subscribe", "pollIds": self.poll_ids}))
        try:
            while not self.stop.is_set():
                try:
                    ws.recv()
                    with self.lock:
                        self.ws_messages += 1
                except websocket.WebSocketTimeoutException:
                    continue
        except Exception as e:  # noqa: BLE001
            if not self.stop.is_set():
                self.errors.append(f"websocket: {e}")
        finally:
            ws.close()

    def user(self, index, name, token):
        c = Client(self.direct if self.direct and index % 2 else self.base, token, self.tally)
        c.request("POST", "/api/auth/login", {"email": f"{name}@example.com", "password": "correct horse battery"})
        rng = random.Random(index)
        n = 0
        # About 4 requests a second: under ratelimit.user_per_minute when it is 300 (tests/ops/live.py).
        while not self.stop.is_set():
            n += 1
            try:
                self.step(c, rng, n, name)
            except Exception as e:  # noqa: BLE001 - an odd answer must not end the load
                self.errors.append(f"user {index}: {type(e).__name__}: {e}")
            self.stop.wait(0.9)

    def step(self, c, rng, n, name):
        """One round of a user: feed, vote or skip, stats, and now and then the rest."""
        status, body = c.request("GET", "/api/polls?limit=10")
        polls = (body or {}).get("polls", []) if status == 200 else []
        if polls:
            p = polls[0]
            if rng.random() < 0.8:
                c.request("POST", f"/api/polls/{p['id']}/vote", {"optionIndex": rng.randrange(len(p["options"]))})
            else:
                c.request("POST", f"/api/polls/{p['id']}/skip", {})
            c.request("GET", f"/api/polls/{p['id']}/stats")
        if n % 3 == 0:
            c.request("GET", f"/api/polls/{rng.choice(self.poll_ids)}")
        if n % 4 == 0:
            c.request("GET", "/api/polls/hot")
        if n % 5 == 0:
            c.request("GET", "/api/polls/987654321")  # 404
        if n % 6 == 0 or not polls:
            c.request("POST", "/api/polls", {"title": f"More {name} {n}", "options": ["a", "b"], "tags": ["ops"]})

    def hammer(self):
        """One user past its per-minute limit: vote_rate_limited_total{kind="user"}. It starts
        6 s in, once Prometheus scrapes (a counter's first value is no increase)."""
        if self.stop.wait(6):
            return
        try:
            name, token = register(self.base, "rl")
        except Exception as e:  # noqa: BLE001
            self.errors.append(str(e))
            return
        c = Client(self.base, token, self.tally)
        for _ in range(self.user_limit):
            if self.stop.is_set():
                return
            c.request("GET", "/api/users/me")
            self.stop.wait(0.01)  # well under ratelimit.ip_per_second (200), which all users share
        # Then one refused request a second, so that the refusals span scrapes.
        for _ in range(60):
            c.request("GET", "/api/users/me")
            if self.stop.wait(1):
                return

    def prober(self):
        """GET /readyz every 2 s, as the load balancer's health check does."""
        c = Client(self.direct or self.base)
        while not self.stop.is_set():
            c.request("GET", "/readyz")
            self.stop.wait(2)

    def run(self, setup=True):
        if setup:
            self.setup()
        threads = [threading.Thread(target=self.prober, daemon=True)]
        threads += [threading.Thread(target=self.websocket, args=(t,), daemon=True) for _, t in self.users[:2]]
        threads += [threading.Thread(target=self.user, args=(i, n, t), daemon=True) for i, (n, t) in enumerate(self.users)]
        threads.append(threading.Thread(target=self.hammer, daemon=True))
        for t in threads:
            t.start()
        if self.duration:
            self.stop.wait(self.duration)
            self.stop.set()
        for t in threads:
            t.join(timeout=20)
        return threads


def main():
    p = argparse.ArgumentParser()
    p.add_argument("base")
    p.add_argument("--duration", type=float, default=15)
    p.add_argument("--users", type=int, default=6)
    p.add_argument("--user-limit", type=int, default=100, help="the server's ratelimit.user_per_minute")
    a = p.parse_args()
    load = Load(a.base, a.users, a.duration, user_limit=a.user_limit)
    load.run()
    print(json.dumps({"statuses": load.counts, "ws_messages": load.ws_messages, "polls": len(load.poll_ids),
                      "errors": load.errors[:5]}))


if __name__ == "__main__":
    main()
