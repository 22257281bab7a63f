#!/usr/bin/env python3
"""Faults under load. Hundreds of voters vote through two `vote serve` instances while one
dependency at a time is stopped and started again, or frozen with SIGSTOP. For each fault it
prints the error window seen by clients, the slowest answer, the votes acknowledged (200) and
the votes stored, and checks that

  - no request waits past its deadline (the slowest answer stays under MAX_WAIT seconds),
  - every acknowledged vote is stored exactly once (the primary key makes "once" hold; this
    checks "stored"), and votes answered 503 are stored at most once,
  - the counts every instance serves converge to the stored votes,
  - the instances recover without a restart (votes succeed again after the fault).

Run by `make faults` (every fault, 200 voters) and, as `--quick` (one fault, 60 voters), by
`make test`. Needs the environment of scripts/test: VOTE_BIN, VOTE_STACK_DIR and the VOTE_*
variables of a private stack that this script may stop and start.
"""
import argparse
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import psycopg2  # noqa: E402
import redis as redis_lib  # noqa: E402

from conftest import PG, REDIS_PORT, ROOT, Server, create_database, drop_database  # noqa: E402

STACK = os.path.join(ROOT, "scripts", "stack")
# Deadlines of the instances under test (short, so the suite is quick), and what "hangs" means.
SERVER_ENV = {"VOTE_VOTES_ANSWER_TIMEOUT": "3s", "VOTE_POSTGRES_ACQUIRE_TIMEOUT": "2s",
              "VOTE_POSTGRES_STATEMENT_TIMEOUT": "2s", "VOTE_POSTGRES_CONNECT_TIMEOUT": "2s",
              "VOTE_VOTES_DAILY_LIMIT": "100000", "VOTE_SERVER_THREADS": "2"}
MAX_WAIT = 8.0
# Enough that no voter runs out of polls before the load ends.
POLLS = 300


def stack(*args):
    done = subprocess.run([STACK, *args], capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"scripts/stack {' '.join(args)} failed: {done.stdout} {done.stderr}")


def postgres_pids():
    conn = psycopg2.connect(dbname="postgres", **PG)
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW data_directory")
            data = cur.fetchone()[0]
    finally:
        conn.close()
    with open(os.path.join(data, "postmaster.pid")) as f:
        postmaster = int(f.readline())
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == postmaster:
                        children.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return [postmaster] + children


def redis_pid():
    return int(redis_lib.Redis(port=REDIS_PORT).info("server")["process_id"])


def freeze(pids_of, seconds):
    pids = pids_of()
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    time.sleep(seconds)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass


FAULTS = {
    "postgres stopped": lambda down: (stack("down", "postgres"), time.sleep(down), stack("up", "postgres")),
    "postgres frozen (SIGSTOP)": lambda down: freeze(postgres_pids, down),
    "redis stopped": lambda down: (stack("down", "redis"), time.sleep(down), stack("up", "redis")),
    "redis frozen (SIGSTOP)": lambda down: freeze(lambda: [redis_pid()], down),
    "rabbitmq stopped": lambda down: (stack("down", "rabbitmq"), time.sleep(down), stack("up", "rabbitmq")),
}


class Load:
    """Voters on threads, each voting on polls it has not voted on yet, through both servers."""

    def __init__(self, servers, voters, polls):
        self.servers, self.voters, self.polls = servers, voters, polls
        self.results = []  # (started, finished, status, user_id, poll_id)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = []

    def run_voter(self, i, user):
        remaining = list(self.polls)
        random.Random(i).shuffle(remaining)
        server = self.servers[i % len(self.servers)]
        while remaining and not self.stop.is_set():
            poll = remaining[-1]
            started = time.time()
            try:
                r = server.request("POST", f"/api/polls/{poll}/vote", {"optionIndex": i % 3}, token=user.token,
                                   timeout=30)
                status = r.status
            except OSError:
                status = 0  # connection refused or reset: counts as a failure
            finished = time.time()
            with self.lock:
                self.results.append((started, finished, status, user.id, poll))
            if status in (200, 409):
                remaining.pop()  # stored (409: an earlier attempt that answered 503 was stored)
            elif status != 429:
                time.sleep(0.05)
            time.sleep(random.uniform(0.0, 0.05))

    def start(self, users):
        for i, user in enumerate(users):
            t = threading.Thread(target=self.run_voter, args=(i, user), daemon=True)
            t.start()
            self.threads.append(t)

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(60)


def run_fault(name, servers, db, voters, down):
    users = [servers[i % 2].register(prefix="fault") for i in range(voters)]
    author = servers[0].register(prefix="author")
    polls = [servers[0].create_poll(author.token, title=f"fault {name} {i}")["id"] for i in range(POLLS)]
    load = Load(servers, voters, polls)
    load.start(users)
    time.sleep(2)
    fault_at = time.time()
    FAULTS[name](down)
    recovered_at = time.time()
    # Recovered: a stretch of 2 s with no failed answer, within 60 s of the fault's end.
    deadline = recovered_at + 60
    while time.time() < deadline:
        time.sleep(0.5)
        with load.lock:
            recent = [r for r in load.results if r[0] > time.time() - 2]
        if recent and all(r[2] in (200, 409, 429) for r in recent) and time.time() - recovered_at > 2:
            break
    load.finish()
    results = load.results
    failed = [r for r in results if r[2] not in (200, 409, 429)]
    window = (max(r[1] for r in failed) - min(r[0] for r in failed)) if failed else 0.0
    slowest = max(r[1] - r[0] for r in results)
    acked = {(r[3], r[4]) for r in results if r[2] == 200}
    user_ids = [u.id for u in users]
    stored = set(map(tuple, db("SELECT user_id, poll_id FROM votes WHERE user_id = ANY(%s)", user_ids)))
    lost = acked - stored
    # Counts converge: every instance serves the stored count of every poll.
    expected = dict(db("SELECT poll_id, count(*) FROM votes WHERE poll_id = ANY(%s) GROUP BY poll_id", polls))
    converged_in = None
    started = time.time()
    while time.time() - started < 20:
        ok = all(s.request("GET", f"/api/polls/{p}/stats", token=author.token).json["totalVotes"] == expected.get(p, 0)
                 for s in servers for p in polls)
        if ok:
            converged_in = time.time() - started
            break
        time.sleep(0.5)
    after = servers[0].request("POST", f"/api/polls/{polls[0]}/vote", {"optionIndex": 0},
                               token=servers[0].register(prefix="after").token)
    during = sum(1 for r in results if fault_at <= r[0] <= recovered_at)
    row = {"fault": name, "requests": len(results), "during": during, "failed": len(failed), "window_s": round(window, 2),
           "slowest_s": round(slowest, 2), "acked": len(acked), "stored": len(stored), "lost": len(lost),
           "converged_s": None if converged_in is None else round(converged_in, 1), "after": after.status,
           "fault_s": round(recovered_at - fault_at, 1)}
    problems = []
    if during == 0:
        problems.append("no request was made during the fault: the load ended too early")
    if lost:
        problems.append(f"{len(lost)} acknowledged votes not stored")
    if slowest > MAX_WAIT:
        problems.append(f"an answer took {slowest:.1f} s (deadline bound {MAX_WAIT} s)")
    if converged_in is None:
        problems.append("counts did not converge to the stored votes within 20 s")
    if after.status != 200:
        problems.append(f"a vote after the fault answered {after.status}")
    return row, problems


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="one fault, 60 voters (make test)")
    args = parser.parse_args()
    faults = ["postgres stopped"] if args.quick else list(FAULTS)
    voters = 60 if args.quick else 200
    database = f"vote_faults_{os.getpid()}"
    create_database(database)
    def db(sql, *params):
        # A connection of its own per query: the database may just have been restarted.
        for _ in range(30):
            try:
                conn = psycopg2.connect(dbname=database, connect_timeout=3, **PG)
                try:
                    with conn.cursor() as cur:
                        cur.execute(sql, params)
                        return cur.fetchall()
                finally:
                    conn.close()
            except psycopg2.Error:
                time.sleep(1)
        raise RuntimeError("database unreachable after the fault")

    servers = [Server(database, env=SERVER_ENV, name=f"faults-{i}").start() for i in range(2)]
    rows, failures = [], []
    try:
        for name in faults:
            row, problems = run_fault(name, servers, db, voters, down=3)
            rows.append(row)
            failures += [f"{name}: {p}" for p in problems]
            print(f"faults: {name}: {row}", flush=True)
    finally:
        codes = [s.stop() for s in servers]
        drop_database(database)
    print()
    print("| fault | requests (during the fault) | failed | error window (s) | slowest answer (s) | acknowledged "
          "| stored | lost | counts converged (s) | vote after |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['fault']} ({r['fault_s']} s) | {r['requests']} ({r['during']}) | {r['failed']} | {r['window_s']} "
              f"| {r['slowest_s']} "
              f"| {r['acked']} | {r['stored']} | {r['lost']} | {r['converged_s']} | {r['after']} |")
    if any(code != 0 for code in codes):
        failures.append(f"servers exited with {codes}")
    for f in failures:
        print(f"faults: FAILED: {f}")
    print(f"faults: {len(rows) - len({f.split(':')[0] for f in failures if ':' in f})} passed, "
          f"{len({f.split(':')[0] for f in failures})} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
