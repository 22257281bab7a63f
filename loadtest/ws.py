"""WebSocket push latency under load (`loadtest/run ws`). Standard library only.

Three processes on this host:
  subscribers  asyncio, a minimal WebSocket client per connection (upgrade, masked client
               frames, unmasked server frames); each subscribes to its polls and records
               (poll, totalVotes, receive time) of every `stats` push.
  voter        asyncio, keep-alive HTTP connections casting votes at --rate per second on the
               watched polls; records (poll, totalVotes after the vote, time the 200 arrived).
               Polls are split over the connections, so the votes of one poll are sequential
               and each vote's totalVotes is exact.
  this one     orchestrates, samples the server's RSS, computes the latencies.

Latency of a vote for a subscriber of its poll = receive time of the first push whose
totalVotes includes the vote - time the vote's 200 arrived. Times are time.monotonic()
(CLOCK_MONOTONIC, one clock for all processes). A push read late because the client's event
loop was busy counts as late: the client shares the 2 cores with the server.
"""
import argparse
import asyncio
import base64
import bisect
import json
import multiprocessing as mp
import os
import random
import re
import signal
import struct
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the repository
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from jwt_mint import mint  # noqa: E402

STATS = re.compile(rb'"pollId":(\d+),"totalVotes":(\d+)')


def watched_polls(index, args):
    return [args.first_poll + (index + j) % args.polls for j in range(args.polls_per_subscriber)]


class Subscriber(asyncio.Protocol):
    """One WebSocket client: upgrade, subscribe, record stats pushes."""

    def __init__(self, token, args, polls):
        self.token = token
        self.args = args
        self.polls = polls
        self.buffer = bytearray()
        self.fragments = None
        self.upgraded = False
        self.transport = None
        self.subscribed = asyncio.get_running_loop().create_future()
        self.pushes = []  # (poll, totalVotes, receive time)
        self.errors = 0
        self.closed_by_server = False

    def connection_made(self, transport):
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write((
            f"GET /api/ws?token={self.token} HTTP/1.1\r\nHost: {self.args.host}:{self.args.port}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n\r\n").encode())

    def connection_lost(self, exc):
        self.closed_by_server = True
        if not self.subscribed.done():
            self.subscribed.set_exception(ConnectionError(f"closed before subscribing: {exc}"))

    def send_frame(self, opcode, payload):
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.transport.write(header + mask + masked)

    def data_received(self, data):
        now = time.monotonic()
        buf = self.buffer
        buf += data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buf[:buf.find(b"\r\n")])
            if b" 101 " not in status:
                if not self.subscribed.done():
                    self.subscribed.set_exception(ConnectionError(status.decode(errors="replace")))
                self.transport.abort()
                return
            del buf[:end + 4]
            self.upgraded = True
            self.send_frame(0x1, json.dumps({"type": "subscribe", "pollIds": self.polls}).encode())
        while len(buf) >= 2:
            b0, b1 = buf[0], buf[1]
            n = b1 & 0x7F
            offset = 2
            if n == 126:
                if len(buf) < 4:
                    return
                n = struct.unpack_from("!H", buf, 2)[0]
                offset = 4
            elif n == 127:
                if len(buf) < 10:
                    return
                n = struct.unpack_from("!Q", buf, 2)[0]
                offset = 10
            masked = b1 & 0x80
            if masked:
                offset += 4
            if len(buf) < offset + n:
                return
            payload = bytes(buf[offset:offset + n])
            if masked:  # servers must not mask; tolerated anyway
                key = buf[offset - 4:offset]
                payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
            del buf[:offset + n]
            opcode, fin = b0 & 0x0F, b0 & 0x80
            if opcode == 0x0:
                if self.fragments is None:
                    continue
                self.fragments += payload
                if fin:
                    payload, self.fragments = bytes(self.fragments), None
                    self.on_message(payload, now)
            elif opcode in (0x1, 0x2):
                if fin:
                    self.on_message(payload, now)
                else:
                    self.fragments = bytearray(payload)
            elif opcode == 0x8:
                self.closed_by_server = True
                self.transport.abort()
                return
            elif opcode == 0x9:
                self.send_frame(0xA, payload)

    def on_message(self, payload, now):
        if payload.startswith(b'{"type":"stats"'):
            match = STATS.search(payload)
            if match:
                self.pushes.append((int(match[1]), int(match[2]), now))
                return
            stats = json.loads(payload)["stats"]
            self.pushes.append((stats["pollId"], stats["totalVotes"], now))
        elif payload.startswith(b'{"type":"subscribed"'):
            if not self.subscribed.done():
                self.subscribed.set_result(True)
        elif payload.startswith(b'{"type":"error"'):
            self.errors += 1


async def subscribers_main(args, pipe, first, last):
    """Subscribers first .. last - 1; then answers the orchestrator's commands on `pipe`."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(args.connect_concurrency)
    subscribers = []
    failures = {}
    started = time.monotonic()

    async def open_one(index):
        async with gate:
            token = mint(args.subscriber_base + 1 + index, args.secret)
            try:
                _, protocol = await asyncio.wait_for(
                    loop.create_connection(lambda: Subscriber(token, args, watched_polls(index, args)),
                                           args.host, args.port), 30)
                await asyncio.wait_for(protocol.subscribed, 30)
                subscribers.append(protocol)
            except Exception as e:  # counted and reported: one failed client must not end the run
                key = f"{type(e).__name__}: {e}"[:120]
                failures[key] = failures.get(key, 0) + 1

    await asyncio.gather(*(open_one(i) for i in range(first, last)))
    pipe.send({"connected": len(subscribers), "failures": failures,
               "connect_seconds": round(time.monotonic() - started, 2)})

    # How late this process's event loop runs callbacks while measuring: a push is stamped when
    # the loop gets to it, so this lag is part of every latency measured here.
    lags = []
    state = {"measuring": False}

    async def monitor():
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.01)
            if state["measuring"]:
                lags.append(time.monotonic() - before - 0.01)

    monitor_task = asyncio.create_task(monitor())
    cpu_start = wall_start = None
    while True:
        command = await loop.run_in_executor(None, pipe.recv)
        if command[0] == "stop":
            break
        if command[0] == "start":
            state["measuring"] = True
            cpu_start, wall_start = time.process_time(), time.monotonic()
            continue
        # ("probe", poll, total, timeout): wait until a subscriber of `poll` has a push that
        # includes `total`, i.e. the whole event path works.
        _, poll, total, timeout = command
        deadline = time.monotonic() + timeout
        seen = not any(poll in s.polls for s in subscribers)  # nobody here watches it
        while not seen and time.monotonic() < deadline:
            seen = any(p == poll and t >= total for s in subscribers if poll in s.polls for p, t, _ in s.pushes)
            if not seen:
                await asyncio.sleep(0.05)
        pipe.send(seen)
    monitor_task.cancel()
    lags.sort()
    result = {"pushes": [(s.polls, s.pushes) for s in subscribers],
              "lost": sum(1 for s in subscribers if s.closed_by_server),
              "errors": sum(s.errors for s in subscribers),
              "cpu_seconds": time.process_time() - cpu_start if cpu_start is not None else 0.0,
              "wall_seconds": time.monotonic() - wall_start if wall_start is not None else 0.0,
              "lag_p50": percentile(lags, 50), "lag_p99": percentile(lags, 99),
              "lag_max": lags[-1] if lags else None}
    for s in subscribers:
        s.transport.abort()
    pipe.send(result)


def run_subscribers(args, pipe, first, last):
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the parent's handler is inherited by fork
    asyncio.run(subscribers_main(args, pipe, first, last))


async def voter_main(args, pipe):
    polls = [args.first_poll + i for i in range(args.polls)]
    connections = min(args.voter_connections, len(polls))
    votes = []  # (poll, totalVotes after the vote, time the 200 arrived)
    statuses = {}
    start = time.monotonic()
    end = start + args.duration
    interval = connections / args.rate  # seconds between two votes of one connection

    async def connection(k):
        reader, writer = await asyncio.open_connection(args.host, args.port)
        mine = polls[k::connections]
        next_at = start + k / args.rate
        voter_round = 0
        try:
            while time.monotonic() < end:
                voter = args.voter_base + 1 + voter_round
                token = mint(voter, args.secret)
                for poll in mine:
                    now = time.monotonic()
                    if now >= end:
                        return
                    if next_at > now:
                        await asyncio.sleep(next_at - now)
                    # Behind schedule: no burst to catch up, the achieved rate is reported.
                    next_at = max(next_at + interval, time.monotonic() - interval)
                    body = b'{"optionIndex":0}'
                    writer.write((
                        f"POST /api/polls/{poll}/vote HTTP/1.1\r\nHost: {args.host}:{args.port}\r\n"
                        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
                        f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
                    head = await reader.readuntil(b"\r\n\r\n")
                    status = int(head.split(b" ", 2)[1])
                    length = 0
                    for line in head.split(b"\r\n")[1:]:
                        if line[:15].lower() == b"content-length:":
                            length = int(line[15:])
                    payload = await reader.readexactly(length) if length else b""
                    received = time.monotonic()
                    statuses[status] = statuses.get(status, 0) + 1
                    if status == 200:
                        votes.append((poll, json.loads(payload)["stats"]["totalVotes"], received))
                voter_round += 1
        finally:
            writer.close()

    outcomes = await asyncio.gather(*(connection(k) for k in range(connections)), return_exceptions=True)
    failures = [f"{type(o).__name__}: {o}" for o in outcomes if isinstance(o, BaseException)]
    pipe.send({"votes": votes, "statuses": statuses, "seconds": time.monotonic() - start, "failures": failures})


def run_voter(args, pipe):
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    asyncio.run(voter_main(args, pipe))


def probe_vote(args):
    """Casts one vote on the first poll as a user the voter never uses; returns its totalVotes."""
    import http.client
    connection = http.client.HTTPConnection(args.host, args.port, timeout=30)
    token = mint(args.voter_base + 9999, args.secret)
    connection.request("POST", f"/api/polls/{args.first_poll}/vote", body=b'{"optionIndex":0}',
                       headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    response = connection.getresponse()
    body = response.read()
    connection.close()
    if response.status != 200:
        sys.exit(f"warm-up vote answered {response.status}: {body[:300]!r}")
    return json.loads(body)["stats"]["totalVotes"]


def proc_kib(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def proc_cpu_seconds(pid):
    """user + system CPU time of a process, all threads."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def percentile(sorted_values, p):
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * p // 100))
    return sorted_values[int(rank) - 1]


def latencies(votes, pushes, limit):
    """Per (subscriber, vote on one of its polls): first push including the vote - its 200."""
    by_poll = {}
    for poll, total, t in votes:
        by_poll.setdefault(poll, []).append((total, t))
    sample = pushes
    work = sum(sum(len(by_poll.get(p, ())) for p in polls) for polls, _ in pushes)
    sampled = False
    if work > limit:
        # Too many pairs for Python in reasonable time: a uniform sample of subscribers.
        keep = max(1, int(len(pushes) * limit / work))
        sample = random.Random(7).sample(pushes, keep)
        sampled = True
    values = []
    missing = 0
    for polls, received in sample:
        per_poll = {}
        for poll, total, t in received:
            seen = per_poll.setdefault(poll, ([], []))
            # running maximum: a push never takes back votes
            seen[0].append(max(total, seen[0][-1]) if seen[0] else total)
            seen[1].append(t)
        for poll in polls:
            totals, times = per_poll.get(poll, ([], []))
            for total, t200 in by_poll.get(poll, ()):
                i = bisect.bisect_left(totals, total)
                if i == len(totals):
                    missing += 1
                else:
                    values.append(times[i] - t200)
    values.sort()
    return values, missing, sampled, len(sample)


def main():
    parser = argparse.ArgumentParser(description="WebSocket push latency under load")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--server-pid", type=int, required=True)
    parser.add_argument("--subscribers", type=int, default=10000)
    parser.add_argument("--polls", type=int, default=100, help="polls watched and voted on")
    parser.add_argument("--first-poll", type=int, default=1)
    parser.add_argument("--polls-per-subscriber", type=int, default=1)
    parser.add_argument("--rate", type=float, default=200.0, help="votes per second")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of voting")
    parser.add_argument("--grace", type=float, default=3.0, help="seconds to wait for the last pushes")
    parser.add_argument("--voter-connections", type=int, default=8)
    parser.add_argument("--voter-base", type=int, default=10000)
    parser.add_argument("--subscriber-base", type=int, default=100000)
    parser.add_argument("--connect-concurrency", type=int, default=200, help="per client process")
    parser.add_argument("--client-procs", type=int, default=1, help="subscriber processes")
    parser.add_argument("--secret", default="dev-secret-change-me")
    parser.add_argument("--max-pairs", type=int, default=3_000_000)
    parser.add_argument("--dump", help="write the raw votes and pushes to this JSON file")
    args = parser.parse_args()
    # SIGTERM from loadtest/run's cleanup: exit through atexit, which stops the daemonic children.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    ctx = mp.get_context("fork")
    rss_start = proc_kib(args.server_pid, "VmRSS")
    procs = max(1, min(args.client_procs, args.subscribers))
    pipes = []
    children = []
    for k in range(procs):
        parent_end, child_end = ctx.Pipe()
        first, last = args.subscribers * k // procs, args.subscribers * (k + 1) // procs
        child = ctx.Process(target=run_subscribers, args=(args, child_end, first, last), daemon=True)
        child.start()
        children.append(child)
        pipes.append(parent_end)

    def gather(timeout, what):
        replies = []
        deadline = time.monotonic() + timeout
        for pipe in pipes:
            if not pipe.poll(max(0.0, deadline - time.monotonic())):
                sys.exit(f"subscribers: no answer to {what} within {timeout:.0f} s")
            replies.append(pipe.recv())
        return replies

    ready = gather(60 + args.subscribers / 50, "connecting")
    connected = sum(r["connected"] for r in ready)
    rss_connected = proc_kib(args.server_pid, "VmRSS")
    print(f"subscribers: {connected}/{args.subscribers} connected and subscribed in "
          f"{max(r['connect_seconds'] for r in ready)} s ({procs} client process(es)); "
          f"server RSS {rss_start / 1024:.0f} -> {rss_connected / 1024:.0f} MiB", flush=True)
    for r in ready:
        for reason, count in r["failures"].items():
            print(f"  failed to connect: {count} x {reason}", flush=True)

    # One vote, and its push, before measuring: the event path (outbox relay, broker, fan-out
    # consumer) is connected only some time after the server answers HTTP.
    probe_started = time.monotonic()
    probe_total = probe_vote(args)
    for pipe in pipes:
        pipe.send(("probe", args.first_poll, probe_total, 60.0))
    if not all(gather(90, "the warm-up probe")):
        sys.exit("no push for the warm-up vote within 60 s: is the event path (RabbitMQ) working?")
    print(f"warm-up: first push arrived {time.monotonic() - probe_started:.2f} s after the warm-up vote", flush=True)

    for pipe in pipes:
        pipe.send(("start",))
    server_cpu_start, wall_start = proc_cpu_seconds(args.server_pid), time.monotonic()
    vote_pipe, vote_child = ctx.Pipe()
    voter = ctx.Process(target=run_voter, args=(args, vote_child), daemon=True)
    voter.start()
    rss_peak = rss_connected
    deadline = time.monotonic() + args.duration + 60
    while not vote_pipe.poll(0.25):
        rss_peak = max(rss_peak, proc_kib(args.server_pid, "VmRSS"))
        if time.monotonic() > deadline:
            sys.exit("the voter did not finish")
    voted = vote_pipe.recv()
    grace_end = time.monotonic() + args.grace
    while time.monotonic() < grace_end:
        rss_peak = max(rss_peak, proc_kib(args.server_pid, "VmRSS"))
        time.sleep(0.25)
    rss_end = proc_kib(args.server_pid, "VmRSS")
    server_cpu = proc_cpu_seconds(args.server_pid) - server_cpu_start
    wall = time.monotonic() - wall_start
    for pipe in pipes:
        pipe.send(("stop",))
    reports = gather(120, "stop")
    received = {"pushes": [p for r in reports for p in r["pushes"]],
                "lost": sum(r["lost"] for r in reports), "errors": sum(r["errors"] for r in reports)}
    voter.join(5)
    for child in children:
        child.join(10)
    client_cpu = sum(r["cpu_seconds"] for r in reports)
    lag_p99 = max((r["lag_p99"] or 0) for r in reports)
    lag_max = max((r["lag_max"] or 0) for r in reports)

    if args.dump:
        with open(args.dump, "w") as f:
            json.dump({"votes": voted["votes"], "pushes": received["pushes"]}, f)
    values, missing, sampled, sampled_subs = latencies(voted["votes"], received["pushes"], args.max_pairs)
    ms = lambda v: None if v is None else round(v * 1000, 1)  # noqa: E731
    pushes = sum(len(p) for _, p in received["pushes"])
    accepted = len(voted["votes"])
    result = {
        "subscribers": args.subscribers,
        "connected": connected,
        "polls": args.polls,
        "polls_per_subscriber": args.polls_per_subscriber,
        "target_rate": args.rate,
        "votes_accepted": accepted,
        "votes_per_s": round(accepted / voted["seconds"], 1) if voted["seconds"] else 0,
        "vote_statuses": {str(k): v for k, v in sorted(voted["statuses"].items())},
        "voter_failures": voted["failures"],
        "pushes_received": pushes,
        "latency_samples": len(values),
        "latency_sampled_subscribers": sampled_subs if sampled else None,
        "never_pushed": missing,
        "p50_ms": ms(percentile(values, 50)),
        "p90_ms": ms(percentile(values, 90)),
        "p99_ms": ms(percentile(values, 99)),
        "max_ms": ms(values[-1] if values else None),
        "dropped_by_server": received["lost"],
        "server_errors": received["errors"],
        "rss_start_mib": round(rss_start / 1024, 1),
        "rss_connected_mib": round(rss_connected / 1024, 1),
        "rss_peak_mib": round(rss_peak / 1024, 1),
        "rss_end_mib": round(rss_end / 1024, 1),
        "hwm_mib": round(proc_kib(args.server_pid, "VmHWM") / 1024, 1),
        "server_cpu_percent": round(100 * server_cpu / wall, 1) if wall else None,
        "subscriber_cpu_percent": round(100 * client_cpu / wall, 1) if wall else None,
        "client_loop_lag_p99_ms": round(lag_p99 * 1000, 1),
        "client_loop_lag_max_ms": round(lag_max * 1000, 1),
    }
    print("WS_JSON " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
