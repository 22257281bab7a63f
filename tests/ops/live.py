"""Live test of the operations kit: a real Prometheus scraping a real `vote serve` under load.

Run by tests/ops/run (which provides the stack); on its own it needs the stack's environment
(VOTE_STACK_DIR, VOTE_POSTGRES_*, VOTE_REDIS_*, VOTE_RABBITMQ_*, RABBITMQ_NODENAME,
RABBITMQ_DIST_PORT, as scripts/test exports them) and VOTE_BIN.

What it starts, each on a free loopback port, with its data in a temporary directory:
  - `vote serve` (a copy of VOTE_BIN) on a database of its own (vote_ops_<pid>, migrated here
    and dropped at the end), its own RabbitMQ vhost and Redis database;
  - prometheus-postgres-exporter and prometheus-redis-exporter against the stack;
  - RabbitMQ's rabbitmq_prometheus plugin on the stack's node (when the node is the stack's
    own; the listener port is set before the plugin starts);
  - haproxy (when installed) on deploy/haproxy/haproxy.cfg with loopback addresses, in front of
    the server: the load goes through it, its health check polls /readyz;
  - prometheus-alertmanager on deploy/alertmanager/alertmanager.yml;
  - prometheus on a configuration rendered from deploy/prometheus/prometheus.yml by
    deploy/prometheus/render.py (1 s scrape and evaluation intervals; same jobs and rules).
Then it runs tests/ops/load.py's load for --duration seconds and checks, printing one
`PASS: ` / `FAIL: ` / `SKIP: ` line per check:
  - every scrape target is up;
  - every rule of deploy/prometheus/rules evaluates without error (/api/v1/rules);
  - every recording rule's expression returns at least one series (/api/v1/query), and so does
    its recorded name; rules over an exporter's metrics only when that exporter ran;
  - every dashboard query of deploy/grafana/queries.yaml returns at least one series (same
    exporter condition, `$instance` = .+);
  - under this healthy load, no alert but the Watchdog is pending or firing (the latency SLO's
    burn alerts are shown, not failed: ASan votes can be slow), and the Watchdog reached
    Alertmanager;
  - Alertmanager's inhibit rules silence what they should (alerts posted to it).

  live.py [--duration 15] [--keep] [--screenshots DIR]   (DIR: one PNG per dashboard, matplotlib)
  live.py --outage [--outage-seconds 180]   (only on a stack of its own: VOTE_OPS_OWN_STACK=1)
    production intervals (15 s), load throughout (half through haproxy, half direct); after
    75 s it stops the stack's PostgreSQL, records when each alert goes pending and firing and
    reaches Alertmanager, starts PostgreSQL again after --outage-seconds and records when they
    resolve. Prints a table and writes outage.json (--outage-json FILE copies it).
"""
import argparse
import glob
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

import yaml

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "deploy", "grafana"))
from load import Load  # noqa: E402

RULES_DIR = os.path.join(ROOT, "deploy", "prometheus", "rules")
QUERIES = os.path.join(ROOT, "deploy", "grafana", "queries.yaml")
ALERTMANAGER_CONFIG = os.path.join(ROOT, "deploy", "alertmanager", "alertmanager.yml")
HAPROXY_CONFIG = os.path.join(ROOT, "deploy", "haproxy", "haproxy.cfg")
RENDER = os.path.join(ROOT, "deploy", "prometheus", "render.py")
STACK = os.path.join(ROOT, "scripts", "stack")
USER_LIMIT = 300  # ratelimit.user_per_minute of the server under test (see load.py)

results = {"PASS": 0, "FAIL": 0, "SKIP": 0}


def report(kind, name, detail=""):
    results[kind] += 1
    print(f"{kind}: {name}" + (f" -- {detail}" if detail else ""), flush=True)


def log(msg):
    print(f"live: {msg}", flush=True)


# ---------------------------------------------------------------------------------------------
# ports and processes

TAKEN = set()


def free_port():
    """A free loopback port below the ephemeral range, outside the stack's 14 ports."""
    base = int(os.environ.get("VOTE_POSTGRES_PORT", "0"))
    reserved = set(range(base, base + 14)) if base else set()
    for _ in range(500):
        p = random.randrange(20000, 32000)
        if p in reserved or p in TAKEN:
            continue
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", p))
        except OSError:
            continue
        finally:
            s.close()
        TAKEN.add(p)
        return p
    raise RuntimeError("no free port between 20000 and 32000")


class Procs:
    def __init__(self, workdir):
        self.workdir = workdir
        self.procs = []

    def start(self, name, argv, env=None, cwd=None):
        logf = open(os.path.join(self.workdir, f"{name}.log"), "wb")
        p = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, env=env, cwd=cwd or self.workdir,
                             start_new_session=True)
        self.procs.append((name, p))
        return p

    def stop_all(self):
        for name, p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.time() + 10
        for name, p in reversed(self.procs):
            t = time.time()
            try:
                p.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            if time.time() - t > 1:
                print(f"live: {name} took {time.time() - t:.1f} s to stop", flush=True)

    def tail(self, name, n=20):
        try:
            with open(os.path.join(self.workdir, f"{name}.log"), "rb") as f:
                return b"\n".join(f.read().splitlines()[-n:]).decode(errors="replace")
        except OSError:
            return ""


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read()


def wait_http(url, seconds, proc=None):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            status, _ = http_get(url, timeout=2)
            if status == 200:
                return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


# ---------------------------------------------------------------------------------------------
# the stack's PostgreSQL, RabbitMQ, Redis

PG = dict(host=os.environ.get("VOTE_POSTGRES_HOST", "127.0.0.1"), port=int(os.environ.get("VOTE_POSTGRES_PORT", "5432")),
          user=os.environ.get("VOTE_POSTGRES_USER", "postgres"), password=os.environ.get("VOTE_POSTGRES_PASSWORD", "postgres"))


def psql(sql, db="postgres"):
    env = dict(os.environ, PGPASSWORD=PG["password"], PGCONNECT_TIMEOUT="5")
    return subprocess.run(["psql", "-X", "-q", "-w", "-v", "ON_ERROR_STOP=1", "-h", PG["host"], "-p", str(PG["port"]),
                           "-U", PG["user"], "-d", db, "-tAc", sql], env=env, capture_output=True, text=True, timeout=60)


def stack_rmq_dir():
    d = os.path.join(os.environ.get("VOTE_STACK_DIR", os.path.join(ROOT, ".stack")), "rabbitmq")
    pid_file = os.path.join(d, "rabbitmq.pid")
    try:
        pid = open(pid_file).read().strip()
        if open(f"/proc/{pid}/comm").read().strip() == "beam.smp":
            return d
    except OSError:
        pass
    return None


def rabbitmq_cli(tool, rmq_dir, *args, timeout=90):
    """rabbitmqctl / rabbitmq-plugins against the stack's node, with the environment
    scripts/stack gives its node (HOME holds the Erlang cookie; the CLI's own distribution
    ports are the ten after the node's)."""
    node = os.environ["RABBITMQ_NODENAME"]
    dist = int(os.environ["RABBITMQ_DIST_PORT"])
    env = dict(os.environ, HOME=os.path.join(rmq_dir, "home"), RABBITMQ_NODENAME=node,
               RABBITMQ_ENABLED_PLUGINS_FILE=os.path.join(rmq_dir, "enabled_plugins"),
               RABBITMQ_CTL_DIST_PORT_MIN=str(dist + 1), RABBITMQ_CTL_DIST_PORT_MAX=str(dist + 10))
    return subprocess.run([f"/usr/lib/rabbitmq/bin/{tool}", "-n", node, *args], env=env, cwd=rmq_dir,
                          capture_output=True, text=True, timeout=timeout)


def disposable_stack():
    """The stack is removed after this run (scripts/test's .stack/tests/<pid>, or tests/ops/run's
    own): RabbitMQ's plugin and vhost need not be undone. VOTE_OPS_STACK_DISPOSABLE=0/1 decides."""
    explicit = os.environ.get("VOTE_OPS_STACK_DISPOSABLE")
    if explicit in ("0", "1"):
        return explicit == "1"
    return "/.stack/tests/" in os.environ.get("VOTE_STACK_DIR", "") and os.environ.get("VOTE_TEST_KEEP_STACK") != "1"


def rabbitmqctl(*args):
    d = stack_rmq_dir()
    if not d or "RABBITMQ_NODENAME" not in os.environ:
        return subprocess.CompletedProcess(args, 1, "", "not the stack's own node")
    return rabbitmq_cli("rabbitmqctl", d, *args)


def rabbitmq_plugins(rmq_dir, *args):
    return rabbitmq_cli("rabbitmq-plugins", rmq_dir, *args)


class RabbitPlugin:
    """rabbitmq_prometheus on the stack's own node, listening on a port of ours."""

    def __init__(self):
        self.rmq_dir = stack_rmq_dir()
        self.enabled_here = False
        self.port = None
        self.why = ""

    def enable(self):
        if not self.rmq_dir or "RABBITMQ_NODENAME" not in os.environ:
            self.why = "the stack's RabbitMQ is not a node scripts/stack started (no pid file), so its plugins are not ours to change"
            return False
        self.port = free_port()
        enabled = open(os.path.join(self.rmq_dir, "enabled_plugins")).read()
        if "rabbitmq_prometheus" in enabled:
            rabbitmq_plugins(self.rmq_dir, "disable", "rabbitmq_prometheus")
        r = rabbitmqctl("eval", "application:load(rabbitmq_prometheus), application:set_env(rabbitmq_prometheus, "
                        f"tcp_config, [{{port, {self.port}}}, {{ip, {{127,0,0,1}}}}]).")
        if r.returncode != 0:
            self.why = f"rabbitmqctl eval failed: {r.stdout[-300:]}{r.stderr[-300:]}"
            return False
        r = rabbitmq_plugins(self.rmq_dir, "enable", "rabbitmq_prometheus")
        self.enabled_here = True
        if not wait_http(f"http://127.0.0.1:{self.port}/metrics", 15):
            self.why = f"rabbitmq-plugins enable: no metrics on :{self.port}: {r.stdout[-300:]}{r.stderr[-300:]}"
            return False
        return True

    def disable(self):
        if self.enabled_here:
            rabbitmq_plugins(self.rmq_dir, "disable", "rabbitmq_prometheus")


def render_haproxy(listen_port, metrics_port, servers):
    """deploy/haproxy/haproxy.cfg with loopback addresses instead of compose's: the listeners,
    the servers, and no Docker DNS resolver. Nothing else changes."""
    with open(HAPROXY_CONFIG) as f:
        text = f.read()
    text, n_res = re.subn(r"\nresolvers docker\n(?:  .*\n)+", "\n", text)
    text = text.replace(" resolvers docker init-addr last,libc,none", "")
    text = text.replace("bind :8080", f"bind 127.0.0.1:{listen_port}").replace("bind :8404", f"bind 127.0.0.1:{metrics_port}")
    lines = [f"  server app{i + 1} {addr} check" for i, addr in enumerate(servers)]
    text, n_srv = re.subn(r"(?:  server app\d+ .*\n)+", "\n".join(lines) + "\n", text)
    if n_res != 1 or n_srv != 1:
        raise RuntimeError(f"{HAPROXY_CONFIG}: not the layout render_haproxy expects")
    return text


# ---------------------------------------------------------------------------------------------
# Prometheus API

class Prom:
    def __init__(self, port):
        self.base = f"http://127.0.0.1:{port}"

    def api(self, path, **params):
        url = f"{self.base}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        _, body = http_get(url, timeout=30)
        doc = json.loads(body)
        if doc.get("status") != "success":
            raise RuntimeError(f"{path}: {doc}")
        return doc["data"]

    def query(self, expr):
        return self.api("query", query=expr)["result"]


def rule_files():
    out = []
    for name in sorted(os.listdir(RULES_DIR)):
        if name.endswith(".yml"):
            with open(os.path.join(RULES_DIR, name)) as f:
                out.append((name, yaml.safe_load(f)))
    return out


def exporters_of(expr):
    from dashboards import exporters_of as f  # the same rule as queries.yaml's `requires`
    return f(expr)


# ---------------------------------------------------------------------------------------------

class Env:
    """Everything started for one run; stop() undoes it."""

    def __init__(self, args):
        self.args = args
        self.work = tempfile.mkdtemp(prefix="vote-ops-live-")
        self.procs = Procs(self.work)
        self.db = f"vote_ops_{os.getpid()}"
        self.vhost = None
        self.redis_db = "12"
        self.plugin = RabbitPlugin()
        self.exporters = {}
        self.vote_port = None
        self.base = None  # where the load goes: the balancer when it runs, else the instance
        self.prom = None
        self.am_port = None
        self.created_db = False

    def start(self, interval):
        t0 = time.time()
        # RabbitMQ's CLI takes seconds per call: the vhost and the plugin are set up on threads
        # of their own while the database is made and migrated.
        own_node = stack_rmq_dir() is not None and "RABBITMQ_NODENAME" in os.environ

        def make_vhost():
            vhost = f"vote_ops_{os.getpid()}"
            if rabbitmqctl("add_vhost", vhost).returncode == 0:
                user = os.environ.get("VOTE_RABBITMQ_USER", "guest")
                if rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*").returncode == 0:
                    self.vhost = vhost
        vhost_thread = threading.Thread(target=make_vhost)
        plugin_ok = []
        plugin_thread = threading.Thread(target=lambda: plugin_ok.append(self.plugin.enable()))
        if own_node:
            vhost_thread.start()
        plugin_thread.start()
        self.redis_cli("flushdb")
        r = psql(f'CREATE DATABASE "{self.db}"')
        if r.returncode != 0:
            raise RuntimeError(f"create database {self.db}: {r.stderr.strip()}")
        self.created_db = True
        binary = os.path.join(self.work, "vote")
        shutil.copy2(os.environ.get("VOTE_BIN", os.path.join(ROOT, "build", "debug-asan", "vote")), binary)
        env = dict(os.environ, VOTE_POSTGRES_DBNAME=self.db, VOTE_REDIS_DB=self.redis_db,
                   VOTE_SERVER_HOST="127.0.0.1", VOTE_SERVER_PORT="0",
                   VOTE_SERVER_PORT_FILE=os.path.join(self.work, "vote.port"), VOTE_SERVER_ACCESS_LOG="false",
                   VOTE_SERVER_THREADS="2", VOTE_SERVER_LOG_LEVEL="warn",
                   VOTE_RATELIMIT_USER_PER_MINUTE=str(USER_LIMIT),
                   ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=0")
        m = subprocess.run([binary, "migrate", "up", "--config", "config/config.yaml"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=120)
        if m.returncode != 0:
            raise RuntimeError(f"migrate: {m.stdout[-500:]}{m.stderr[-500:]}")
        if own_node:
            vhost_thread.join()
        if self.vhost:
            env["VOTE_RABBITMQ_VHOST"] = self.vhost
        else:
            log(f"RabbitMQ: using the stack's vhost {os.environ.get('VOTE_RABBITMQ_VHOST', '/')} (no vhost of our own)")
        vote = self.procs.start("vote", [binary, "serve", "--config", "config/config.yaml"], env=env, cwd=ROOT)

        # Exporters (they start in parallel with the server).
        pg_port = free_port()
        dsn = (f"postgresql://{urllib.parse.quote(PG['user'])}:{urllib.parse.quote(PG['password'])}"
               f"@{PG['host']}:{PG['port']}/postgres?sslmode=disable")
        pg_exp = self.procs.start("postgres-exporter", ["prometheus-postgres-exporter",
                                                        f"--web.listen-address=127.0.0.1:{pg_port}"],
                                  env=dict(os.environ, DATA_SOURCE_NAME=dsn))
        redis_port = free_port()
        redis_args = ["prometheus-redis-exporter", f"-redis.addr=redis://{os.environ.get('VOTE_REDIS_HOST', '127.0.0.1')}:"
                      f"{os.environ.get('VOTE_REDIS_PORT', '6379')}", f"-web.listen-address=127.0.0.1:{redis_port}"]
        redis_env = dict(os.environ)
        if os.environ.get("VOTE_REDIS_PASSWORD"):
            redis_env["REDIS_PASSWORD"] = os.environ["VOTE_REDIS_PASSWORD"]
        redis_exp = self.procs.start("redis-exporter", redis_args, env=redis_env)
        self.am_port = free_port()
        am = self.procs.start("alertmanager", ["prometheus-alertmanager", f"--config.file={ALERTMANAGER_CONFIG}",
                                               f"--storage.path={self.work}/alertmanager",
                                               f"--web.listen-address=127.0.0.1:{self.am_port}",
                                               "--cluster.listen-address="])
        for name, proc, port in (("postgres", pg_exp, pg_port), ("redis", redis_exp, redis_port)):
            if wait_http(f"http://127.0.0.1:{port}/metrics", 10, proc):
                self.exporters[name] = f"127.0.0.1:{port}"
            else:
                log(f"{name} exporter did not start: {self.procs.tail(name + '-exporter')}")
        if not wait_http(f"http://127.0.0.1:{self.am_port}/-/ready", 10, am):
            raise RuntimeError(f"alertmanager did not start: {self.procs.tail('alertmanager')}")

        deadline = time.time() + 60
        port_file = os.path.join(self.work, "vote.port")
        while time.time() < deadline and vote.poll() is None:
            if os.path.exists(port_file) and open(port_file).read().strip():
                self.vote_port = int(open(port_file).read().strip())
                break
            time.sleep(0.05)
        if not self.vote_port or not wait_http(f"http://127.0.0.1:{self.vote_port}/readyz", 30, vote):
            raise RuntimeError(f"vote serve did not become ready: {self.procs.tail('vote')}")

        plugin_thread.join()
        if plugin_ok and plugin_ok[0]:
            self.exporters["rabbitmq"] = f"127.0.0.1:{self.plugin.port}"
        else:
            log(f"RabbitMQ exporter skipped: {self.plugin.why}")

        # HAProxy in front, with the compose stack's configuration (loopback addresses).
        self.base = f"http://127.0.0.1:{self.vote_port}"
        if shutil.which("haproxy"):
            lb_port, lb_metrics = free_port(), free_port()
            lb_cfg = os.path.join(self.work, "haproxy.cfg")
            with open(lb_cfg, "w") as f:
                f.write(render_haproxy(lb_port, lb_metrics, [f"127.0.0.1:{self.vote_port}"]))
            # -n: a maxconn that fits any descriptor limit (the compose one is 4096).
            lb = self.procs.start("haproxy", ["haproxy", "-db", "-n", "1000", "-f", lb_cfg])
            if wait_http(f"http://127.0.0.1:{lb_metrics}/metrics", 10, lb) and \
                    wait_http(f"http://127.0.0.1:{lb_port}/readyz", 10, lb):
                self.exporters["haproxy"] = f"127.0.0.1:{lb_metrics}"
                self.base = f"http://127.0.0.1:{lb_port}"
            else:
                log(f"haproxy did not start: {self.procs.tail('haproxy')}")
        else:
            log("haproxy not installed: the load goes to the instance directly, haproxy queries are skipped")

        # Prometheus on the rendered configuration.
        prom_port = free_port()
        cfg = os.path.join(self.work, "prometheus.yml")
        targets = [f"--target=vote=127.0.0.1:{self.vote_port}", f"--target=prometheus=127.0.0.1:{prom_port}",
                   f"--target=alertmanager=127.0.0.1:{self.am_port}"]
        targets += [f"--target={job}={addr}" for job, addr in self.exporters.items()]
        argv = [sys.executable, RENDER, "--out", cfg, f"--alertmanager=127.0.0.1:{self.am_port}", *targets]
        if interval:
            argv.append(f"--interval={interval}")
        subprocess.run(argv, check=True, capture_output=True)
        prom = self.procs.start("prometheus", ["prometheus", f"--config.file={cfg}",
                                               f"--storage.tsdb.path={self.work}/prometheus",
                                               f"--web.listen-address=127.0.0.1:{prom_port}",
                                               "--storage.tsdb.retention.time=1d",
                                               # An alert sent before Alertmanager is discovered is
                                               # dropped and sent again only after this delay.
                                               f"--rules.alert.resend-delay={'1m' if self.args.outage else '1s'}",
                                               "--web.console.templates=/etc/prometheus/consoles",
                                               "--web.console.libraries=/etc/prometheus/console_libraries"])
        if not wait_http(f"http://127.0.0.1:{prom_port}/-/ready", 20, prom):
            raise RuntimeError(f"prometheus did not start: {self.procs.tail('prometheus')}")
        self.prom = Prom(prom_port)
        self.cfg = cfg
        log(f"started in {time.time() - t0:.1f} s: vote :{self.vote_port}, prometheus :{prom_port}, "
            f"alertmanager :{self.am_port}, exporters {self.exporters or 'none'} (work dir {self.work})")

    def wait_targets_up(self, seconds):
        deadline = time.time() + seconds
        while time.time() < deadline:
            active = self.prom.api("targets")["activeTargets"]
            if active and all(t["health"] == "up" for t in active):
                return active
            self.not_up = [(t["labels"]["job"], t["health"], t["lastError"]) for t in active if t["health"] != "up"]
            time.sleep(0.25)
        return self.prom.api("targets")["activeTargets"]

    def redis_cli(self, *args):
        env = dict(os.environ)
        env.pop("REDISCLI_AUTH", None)
        if os.environ.get("VOTE_REDIS_PASSWORD"):
            env["REDISCLI_AUTH"] = os.environ["VOTE_REDIS_PASSWORD"]
        return subprocess.run(["redis-cli", "-h", os.environ.get("VOTE_REDIS_HOST", "127.0.0.1"), "-p",
                               os.environ.get("VOTE_REDIS_PORT", "6379"), "-n", self.redis_db, *args],
                              capture_output=True, text=True, env=env, timeout=30)

    def stop(self):
        self.procs.stop_all()
        # The two RabbitMQ CLI calls in parallel; none on a stack about to be removed.
        cleanup = [] if disposable_stack() else [threading.Thread(target=self.plugin.disable)]
        if self.vhost and not disposable_stack():
            cleanup.append(threading.Thread(target=rabbitmqctl, args=("delete_vhost", self.vhost)))
        for t in cleanup:
            t.start()
        if self.created_db:
            r = psql(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')
            if r.returncode != 0:
                log(f"could not drop database {self.db}: {r.stderr.strip()}")
        r = self.redis_cli("flushdb")
        if r.stdout.strip() != "OK":
            log(f"could not empty Redis database {self.redis_db}: {r.stdout.strip()} {r.stderr.strip()}")
        for t in cleanup:
            t.join()
        if self.args.keep:
            log(f"work directory kept: {self.work}")
        else:
            shutil.rmtree(self.work, ignore_errors=True)


def check_healthy(env, load):
    prom = env.prom
    ran = set(env.exporters)

    active = env.wait_targets_up(10)
    down = [f"{t['labels']['job']} {t['scrapeUrl']}: {t['lastError']}" for t in active if t["health"] != "up"]
    if down:
        report("FAIL", "every scrape target is up", "; ".join(down))
    else:
        report("PASS", "every scrape target is up", ", ".join(sorted({t["labels"]["job"] for t in active})))
    for job in ("postgres", "redis", "rabbitmq", "haproxy"):
        if job not in ran:
            report("SKIP", f"{job} exporter", "did not run; its queries are not evaluated")

    # Rule health as Prometheus evaluated them.
    groups = prom.api("rules")["groups"]
    bad = [f"{r['name']}: {r.get('lastError')}" for g in groups for r in g["rules"] if r.get("health") != "ok"]
    n_rules = sum(len(g["rules"]) for g in groups)
    expected = sum(len(g["rules"]) for _, doc in rule_files() for g in doc["groups"])
    if bad or n_rules != expected:
        report("FAIL", f"all {expected} rules evaluate without error", f"{n_rules} loaded; " + "; ".join(bad[:10]))
    else:
        report("PASS", f"all {expected} rules evaluate without error")

    # Every recording rule: its expression and its recorded series.
    for fname, doc in rule_files():
        for g in doc["groups"]:
            for r in g["rules"]:
                if "record" not in r:
                    continue
                name = f"rule {r['record']}"
                need = set(exporters_of(r["expr"]))
                if need - ran:
                    report("SKIP", name, f"needs the {', '.join(sorted(need - ran))} exporter")
                    continue
                n_expr = len(prom.query(r["expr"]))
                n_rec = len(prom.query(r["record"]))
                if n_expr and n_rec:
                    report("PASS", name, f"{n_expr} series")
                else:
                    report("FAIL", name, f"expression: {n_expr} series, recorded: {n_rec} series")

    # Every dashboard query.
    with open(QUERIES) as f:
        queries = yaml.safe_load(f)["queries"]
    for q in queries:
        name = f"panel {q['dashboard']} / {q['panel']} / {q['ref']}"
        missing = set(q["requires"]) - ran
        if missing:
            report("SKIP", name, f"needs the {', '.join(sorted(missing))} exporter")
            continue
        expr = q["expr"].replace("$instance", ".+")
        n = len(prom.query(expr))
        report("PASS" if n else "FAIL", name, f"{n} series" if n else f"no series for {expr}")

    # Alerts under healthy load. The latency SLO is the release build's on production hardware:
    # under ASan on a shared 2-core machine some votes take 100 ms or more, so its burn alerts
    # may be pending here; they are shown, not failed.
    # A pending alert may be a blip (one scrape over its 1 s timeout on a busy machine makes
    # `up` 0 once): what is pending or firing in two looks 3 s apart counts.
    def active():
        alerts = prom.api("alerts")["alerts"]
        return alerts, {(a["labels"]["alertname"], a["labels"].get("instance", ""), a["state"]) for a in alerts
                        if a["labels"]["alertname"] != "Watchdog" and not a["labels"].get("slo")}
    _, first = active()
    if first:
        time.sleep(3)
    alerts, second = active()
    slo = [f"{a['labels']['alertname']} {a['labels'].get('burn_window', '')} ({a['state']})" for a in alerts
           if a["labels"].get("slo")]
    lasting = {(n, i) for n, i, _ in first} & {(n, i) for n, i, _ in second}
    others = sorted(f"{n} {i} ({st})" for n, i, st in second if (n, i) in lasting)
    if first - second:
        log(f"alerts pending for a moment only: {sorted(first - second)}")
    if others:
        report("FAIL", "no alert but the Watchdog is pending or firing under healthy load", ", ".join(others))
    else:
        report("PASS", "no alert but the Watchdog is pending or firing under healthy load")
    durations = {r["metric"]["job"]: float(r["value"][1]) for r in
                 prom.query("max by (job) (max_over_time(scrape_duration_seconds[5m]))")}
    log("longest scrape by job (s): " + ", ".join(f"{j} {d:.3f}" for j, d in sorted(durations.items())))
    slow = [x["value"][1] for x in prom.query("job:vote_latency_slo_errors:ratio_rate5m")]
    p99 = [x["value"][1] for x in prom.query('route:http_request_duration_seconds:p99{route="/api/polls/{id}/vote"}')]
    log(f"vote latency here: {float(slow[0]) * 100 if slow else float('nan'):.2f}% of votes took 100 ms or more, "
        f"p99 {float(p99[0]) * 1000 if p99 else float('nan'):.0f} ms; SLO alerts: {', '.join(slo) or 'none'}")
    check_inhibitions(env)
    deadline = time.time() + 10
    got = []
    while time.time() < deadline:
        _, body = http_get(f"http://127.0.0.1:{env.am_port}/api/v2/alerts")
        got = [a["labels"]["alertname"] for a in json.loads(body)]
        if "Watchdog" in got:
            break
        time.sleep(0.25)
    report("PASS" if "Watchdog" in got else "FAIL", "the Watchdog reached Alertmanager",
           "" if "Watchdog" in got else f"alertmanager has {got}")


def check_inhibitions(env):
    """Alertmanager's inhibit rules, on alerts posted to this run's own Alertmanager."""
    now = time.time()
    iso = lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))  # noqa: E731
    posted = [
        {"alertname": "PostgresDown", "severity": "critical", "job": "postgres", "instance": "pgx:9187"},
        {"alertname": "VoteDependencyDown", "severity": "critical", "job": "vote", "instance": "app1:8080", "dependency": "postgres"},
        {"alertname": "VoteOutboxLagging", "severity": "warning", "job": "vote"},
        {"alertname": "VoteOutboxLagging", "severity": "critical", "job": "vote"},
        {"alertname": "VoteInstanceDown", "severity": "critical", "job": "vote", "instance": "app2:8080"},
        {"alertname": "VoteEventConsumerDown", "severity": "warning", "job": "vote", "instance": "app2:8080"},
        {"alertname": "VoteEventConsumerDown", "severity": "warning", "job": "vote", "instance": "app3:8080"},
    ]
    for p in posted:
        p["ops_test"] = "inhibition"
    body = json.dumps([{"labels": p, "startsAt": iso(now - 5), "endsAt": iso(now + 60)} for p in posted]).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{env.am_port}/api/v2/alerts", data=body,
                                 headers={"Content-Type": "application/json"}, method="POST")
    urllib.request.urlopen(req, timeout=5).read()
    expect_inhibited = {("VoteDependencyDown", "critical", "app1:8080"), ("VoteOutboxLagging", "warning", ""),
                        ("VoteEventConsumerDown", "warning", "app2:8080")}
    problems = []
    deadline = time.time() + 5
    while time.time() < deadline:
        _, raw = http_get(f"http://127.0.0.1:{env.am_port}/api/v2/alerts?filter=ops_test%3D%22inhibition%22")
        state = {(a["labels"]["alertname"], a["labels"]["severity"], a["labels"].get("instance", "")):
                 bool(a["status"]["inhibitedBy"]) for a in json.loads(raw)}
        problems = [f"{k} {'inhibited' if v else 'not inhibited'}" for k, v in state.items()
                    if v != (k in expect_inhibited)]
        if len(state) == len(posted) and not problems:
            break
        time.sleep(0.2)
    report("FAIL" if problems else "PASS", "Alertmanager inhibits warnings under criticals, consequences under causes",
           "; ".join(problems))


def screenshots(env, outdir, since):
    """One PNG per dashboard: every panel's queries over the load, drawn with matplotlib (Debian
    python3-matplotlib) from Prometheus's query_range, laid out like the dashboard's rows."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(outdir, exist_ok=True)
    ran = set(env.exporters)
    end = time.time()
    for path in sorted(glob.glob(os.path.join(ROOT, "deploy", "grafana", "dashboards", "*.json"))):
        with open(path) as f:
            d = json.load(f)
        panels = [p for p in d["panels"] if p["type"] != "row"]
        cols = 3
        rows = (len(panels) + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(cols * 5.2, rows * 2.9), squeeze=False)
        fig.suptitle(f"{d['title']}  (Prometheus, {end - since:.0f} s of tests/ops load)", fontsize=13)
        for ax in axes.flat[len(panels):]:
            ax.axis("off")
        for ax, p in zip(axes.flat, panels):
            ax.set_title(p["title"], fontsize=8.5)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
            lines = 0
            for t in p["targets"]:
                from dashboards import exporters_of as need  # noqa: E402
                if set(need(t["expr"])) - ran:
                    continue
                try:
                    data = env.prom.api("query_range", query=t["expr"].replace("$instance", ".+"),
                                        start=f"{since:.3f}", end=f"{end:.3f}", step="1")["result"]
                except Exception:  # noqa: BLE001
                    data = []
                for series in data[:8]:
                    xs = [float(v[0]) - since for v in series["values"]]
                    ys = [float(v[1]) for v in series["values"]]
                    label = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: series["metric"].get(m.group(1), ""),
                                   t.get("legendFormat") or t["expr"])
                    ax.plot(xs, ys, linewidth=1.2, label=label[:40])
                    lines += 1
            if lines:
                ax.legend(fontsize=6, loc="upper left")
            else:
                ax.text(0.5, 0.5, "no data here (exporter not run)", ha="center", va="center", fontsize=8,
                        transform=ax.transAxes, color="grey")
            unit = p["fieldConfig"]["defaults"].get("unit", "")
            if unit and unit != "none":
                ax.set_ylabel(unit, fontsize=7)
        fig.tight_layout(rect=(0, 0, 1, 0.97))
        png = os.path.join(outdir, f"{d['uid']}.png")
        fig.savefig(png, dpi=80)
        plt.close(fig)
        log(f"screenshot {os.path.relpath(png, ROOT) if png.startswith(ROOT) else png} ({len(panels)} panels)")


def outage(env, seconds):
    """Stop the stack's PostgreSQL under load; record each alert's pending, firing, notified
    (received by Alertmanager) and resolved times, in seconds after the stop."""
    if os.environ.get("VOTE_OPS_OWN_STACK") != "1":
        report("FAIL", "outage", "refused: the stack is not this run's own (VOTE_OPS_OWN_STACK=1)")
        return
    stack = os.environ["VOTE_STACK_DIR"]
    loc = os.path.join(stack, "pg.location")
    pg_dir = open(loc).read().strip() if os.path.exists(loc) else os.path.join(stack, "pg")
    data = os.path.join(pg_dir, "data")
    stop = threading.Event()
    # Half the users through the balancer (as in the compose stack: it takes the instance out of
    # rotation and answers 503 itself), half straight to the instance (as with `make run`: the
    # instance answers 503 and counts it).
    direct = f"http://127.0.0.1:{env.vote_port}"
    load = Load(env.base, users=6, duration=0, stop=stop, user_limit=USER_LIMIT,
                direct=direct if env.base != direct else None)
    load.setup()
    runner = threading.Thread(target=load.run, kwargs={"setup": False}, daemon=True)
    runner.start()
    warm = 75
    log(f"outage: load running; PostgreSQL ({data}) stops in {warm} s")
    time.sleep(warm)
    baseline = {a["labels"]["alertname"] for a in env.prom.api("alerts")["alerts"]}
    seen = {}
    phases = {}

    def snapshot(name):
        with load.lock:
            phases[name] = dict(load.counts)

    def sample(t):
        active = set()
        for a in env.prom.api("alerts")["alerts"]:
            lab = a["labels"]
            if lab["alertname"] == "Watchdog":
                continue
            key = (lab["alertname"], lab.get("severity", ""),
                   lab.get("dependency") or lab.get("reason") or lab.get("burn_window") or lab.get("instance", ""))
            active.add(key)
            e = seen.setdefault(key, {"pending": None, "firing": None, "notified": None, "resolved": None,
                                      "before": lab["alertname"] in baseline})
            if e["pending"] is None:
                e["pending"] = t
            if a["state"] == "firing" and e["firing"] is None:
                e["firing"] = t
        try:
            _, body = http_get(f"http://127.0.0.1:{env.am_port}/api/v2/alerts")
            for a in json.loads(body):
                lab = a["labels"]
                for key, e in seen.items():
                    if key[0] == lab["alertname"] and e["notified"] is None and \
                            key[2] in (lab.get("dependency"), lab.get("reason"), lab.get("burn_window"),
                                       lab.get("instance"), ""):
                        e["notified"] = t
        except OSError:
            pass
        for key, e in seen.items():
            if key not in active and e["resolved"] is None and t > 1:
                e["resolved"] = t
            if key in active:
                e["resolved"] = None

    snapshot("before")
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    t_stop = time.time()
    r = subprocess.run(as_pg + ["/usr/lib/postgresql/15/bin/pg_ctl", "-D", data, "-m", "fast", "-w", "stop"],
                       capture_output=True, text=True, cwd="/")
    log(f"outage: pg_ctl stop: {r.returncode} {r.stdout.strip()} {r.stderr.strip()}")
    while time.time() - t_stop < seconds:
        sample(time.time() - t_stop)
        time.sleep(1)
    snapshot("during")
    t_start = time.time()
    r = subprocess.run([STACK, "up"], capture_output=True, text=True)
    restart = t_start - t_stop
    log(f"outage: PostgreSQL started again after {restart:.0f} s ({'ok' if r.returncode == 0 else r.stderr[-300:]})")
    while time.time() - t_start < 150:
        sample(time.time() - t_stop)
        if all(e["resolved"] is not None for e in seen.values()):
            break
        time.sleep(1)
    snapshot("after")
    stop.set()
    runner.join(timeout=40)

    def diff(a, b):
        return {k: b.get(k, 0) - a.get(k, 0) for k in sorted(set(a) | set(b), key=str) if b.get(k, 0) - a.get(k, 0)}
    rows = sorted(seen.items(), key=lambda kv: (kv[1]["firing"] is None, kv[1]["firing"] or 1e9, kv[1]["pending"]))
    fmt = lambda v: "-" if v is None else f"{v:.0f}"  # noqa: E731
    print(f"{'alert':30} {'severity':9} {'label':24} {'pending':>7} {'firing':>7} {'in AM':>6} {'resolved':>8}"
          f"   (s after pg_ctl stop; started again at {restart:.0f} s)")
    out = []
    for (name, sev, label), e in rows:
        note = "  (already pending before the stop)" if e["before"] else ""
        print(f"{name:30} {sev:9} {label[:24]:24} {fmt(e['pending']):>7} {fmt(e['firing']):>7} "
              f"{fmt(e['notified']):>6} {fmt(e['resolved']):>8}{note}")
        out.append({"alert": name, "severity": sev, "label": label, **e})
    statuses = {"during the outage": diff(phases["before"], phases["during"]),
                "after the restart": diff(phases["during"], phases["after"])}
    log(f"outage: answers to the load (0 = no answer): {statuses}")
    with open(os.path.join(env.work, "outage.json"), "w") as f:
        json.dump({"restart_after": restart, "alerts": out, "statuses": statuses}, f, indent=1, default=str)
    report("PASS" if any(e["firing"] is not None for e in seen.values()) else "FAIL", "alerts fire when PostgreSQL stops")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=15)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--screenshots", metavar="DIR")
    ap.add_argument("--outage", action="store_true")
    ap.add_argument("--outage-seconds", type=float, default=180)
    ap.add_argument("--outage-json", metavar="FILE", help="copy outage.json here")
    args = ap.parse_args()

    env = Env(args)
    code = 0
    try:
        env.start(interval=None if args.outage else "1s")
        if args.outage:
            outage(env, args.outage_seconds)
            if args.outage_json and os.path.exists(os.path.join(env.work, "outage.json")):
                shutil.copy(os.path.join(env.work, "outage.json"), args.outage_json)
        else:
            # Prometheus scrapes its targets from about 5 s after its start (its target updates are
            # throttled to one per 5 s): the load starts at once, the checks wait for targets up.
            t = load_start = time.time()
            load = Load(env.base, users=6, duration=args.duration, user_limit=USER_LIMIT)
            load.run()
            log(f"load: {time.time() - t:.1f} s, statuses {load.counts}, {load.ws_messages} WebSocket messages, "
                f"{len(load.poll_ids)} polls" + (f", errors {load.errors[:3]}" if load.errors else ""))
            time.sleep(2.5)  # a couple of rule evaluations after the last requests
            t = time.time()
            check_healthy(env, load)
            log(f"checks: {time.time() - t:.1f} s")
            if args.screenshots:
                screenshots(env, args.screenshots, load_start)
    except Exception as e:  # noqa: BLE001 - a broken environment is one failed check
        report("FAIL", "live environment", f"{type(e).__name__}: {e}")
        code = 1
    finally:
        t = time.time()
        env.stop()
        log(f"stopped and cleaned up in {time.time() - t:.1f} s")
    print(f"live: {results['PASS']} passed, {results['FAIL']} failed, {results['SKIP']} skipped", flush=True)
    sys.exit(1 if results["FAIL"] or code else 0)


if __name__ == "__main__":
    main()
