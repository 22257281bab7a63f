# Helpers shared by loadtest/run (sourced). Everything started here is stopped by cleanup (EXIT
# trap); everything written goes under $WORK (a fresh /tmp directory).
# shellcheck shell=bash

LOADTEST_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
ROOT=$(dirname "$LOADTEST_DIR")
BIN=${VOTE_BIN:-$ROOT/build/release/vote}
PYTHON=${PYTHON:-python3}
export PYTHONDONTWRITEBYTECODE=1  # no __pycache__ in the repository

# The database, Redis database and RabbitMQ vhost of the load tests: never the ones of `make run`
# (vote, Redis 0, /) nor of the integration tests (vote_test, Redis 9), so that events, cached
# stats and votes of a load test reach nobody else.
LOADTEST_DB=${LOADTEST_DB:-vote_load}
LOADTEST_REDIS_DB=${LOADTEST_REDIS_DB:-8}
LOADTEST_VHOST=${LOADTEST_VHOST:-vote_load}
LOADTEST_FEED_POLLS=${LOADTEST_FEED_POLLS:-1000000}
LOADTEST_SERVER_THREADS=${LOADTEST_SERVER_THREADS:-0}   # 0: one per core, as in production
JWT_SECRET=${VOTE_JWT_SECRET_KEY:-dev-secret-change-me}

export PGHOST=${VOTE_POSTGRES_HOST:-127.0.0.1}
export PGPORT=${VOTE_POSTGRES_PORT:-5432}
export PGUSER=${VOTE_POSTGRES_USER:-postgres}
export PGPASSWORD=${VOTE_POSTGRES_PASSWORD:-postgres}
REDIS_PORT=${VOTE_REDIS_PORT:-6379}

# shellcheck disable=SC2034  # used by loadtest/run
# User id ranges (see seed.sql): 1 creates every poll; 2, 3, 4 are the feed users; voters of
# `votes` from 1001, voters of `ws` from 10001, subscribers of `ws` from 100001; pgbench votes as
# random ids from 2000001 (no rows: votes have no foreign key to users).
FEED_USERS=(2 3 4)
VOTER_BASE=1000
WS_VOTER_BASE=10000
WS_SUBSCRIBER_BASE=100000
PGBENCH_USER_MIN=2000001
PGBENCH_USER_MAX=3000000

WORK=$(mktemp -d /tmp/vote-loadtest.XXXXXX)
chmod 755 "$WORK"  # nginx workers (user nobody when run as root) read files here
STARTED_PIDS=()
SERVER_PID=""
SERVER_PORT=""
NGINX_PID=""
NGINX_PORT=""

say() { printf '%s\n' "$*"; }
warn() { printf '%s\n' "$*" >&2; }
die() {
  warn "loadtest: $*"
  exit 1
}

cleanup() {
  local rc=$? pid i
  trap - EXIT INT TERM
  for ((i = ${#STARTED_PIDS[@]} - 1; i >= 0; i--)); do
    pid=${STARTED_PIDS[i]}
    kill -0 "$pid" 2>/dev/null || continue
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null || true
  done
  if [ ! -d "$WORK" ]; then
    :
  elif [ "$rc" -ne 0 ] || [ "${LOADTEST_KEEP_WORK:-0}" = 1 ]; then
    warn "loadtest: logs kept in $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

forget_pid() {
  local keep=() p
  for p in "${STARTED_PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  STARTED_PIDS=("${keep[@]}")
}

need() {
  local tool
  for tool in "$@"; do command -v "$tool" >/dev/null || die "$tool is not installed"; done
}

free_port() {
  "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Raises the open-files limit of this shell (and of what it starts) as far as allowed.
raise_nofile() {
  local want=${1:-65536} hard
  hard=$(ulimit -Hn)
  if [ "$hard" != unlimited ] && [ "$hard" -lt "$want" ]; then want=$hard; fi
  ulimit -n "$want" 2>/dev/null || warn "loadtest: could not raise ulimit -n to $want (now $(ulimit -n))"
}

# --- services ----------------------------------------------------------------------------------

# PostgreSQL, Redis and RabbitMQ up, with our vhost created (scripts/stack creates a configured
# vhost that does not exist yet).
ensure_stack() {
  VOTE_RABBITMQ_VHOST=$LOADTEST_VHOST "$ROOT/scripts/stack" up >"$WORK/stack.log" 2>&1 ||
    die "scripts/stack up failed: $(tail -5 "$WORK/stack.log")"
}

psql_admin() { psql -X -q -v ON_ERROR_STOP=1 -d postgres "$@"; }
psql_db() { psql -X -q -v ON_ERROR_STOP=1 -d "$LOADTEST_DB" "$@"; }

redis_flush() {
  redis-cli -h 127.0.0.1 -p "$REDIS_PORT" -n "$LOADTEST_REDIS_DB" FLUSHDB >/dev/null ||
    die "cannot flush Redis database $LOADTEST_REDIS_DB"
}

# --- the server ----------------------------------------------------------------------------------

# start_server [VAR=value ...]: `vote serve` on a loopback port picked by the kernel, against the
# load-test database, without access log and rate limits. Sets SERVER_PID and SERVER_PORT.
start_server() {
  [ -x "$BIN" ] || die "$BIN is missing: build it first (make build)"
  local port_file=$WORK/server.port log=$WORK/server.log
  rm -f "$port_file"
  (
    cd "$ROOT" &&
      exec env \
        VOTE_SERVER_HOST=127.0.0.1 VOTE_SERVER_PORT=0 VOTE_SERVER_PORT_FILE="$port_file" \
        VOTE_SERVER_ACCESS_LOG=false VOTE_SERVER_LOG_LEVEL=warn \
        VOTE_SERVER_THREADS="$LOADTEST_SERVER_THREADS" \
        VOTE_RATELIMIT_ENABLED="${LOADTEST_RATELIMIT:-false}" \
        VOTE_RATELIMIT_USER_PER_MINUTE=100000000 VOTE_RATELIMIT_IP_PER_SECOND=100000000 \
        VOTE_VOTES_DAILY_LIMIT=1000000 \
        VOTE_POSTGRES_DBNAME="$LOADTEST_DB" VOTE_REDIS_DB="$LOADTEST_REDIS_DB" \
        VOTE_RABBITMQ_VHOST="$LOADTEST_VHOST" \
        "$@" "$BIN" --config config/config.yaml serve
  ) >"$log" 2>&1 &
  SERVER_PID=$!
  STARTED_PIDS+=("$SERVER_PID")
  local deadline=$((SECONDS + 180))
  while [ "$SECONDS" -lt "$deadline" ]; do
    kill -0 "$SERVER_PID" 2>/dev/null || die "the server exited: $(tail -20 "$log")"
    if [ -s "$port_file" ]; then
      SERVER_PORT=$(tr -d '[:space:]' <"$port_file")
      # The port is bound before the feed index loads; /healthz answers once it has.
      if curl -sf --max-time 5 "http://127.0.0.1:$SERVER_PORT/healthz" >/dev/null 2>&1; then return 0; fi
    fi
    sleep 0.2
  done
  die "the server did not answer /healthz within 180 s: $(tail -20 "$log")"
}

# stop_pid SIGNAL PID TENTHS: sends SIGNAL, waits up to TENTHS tenths of a second, then kills.
stop_pid() {
  kill "-$1" "$2" 2>/dev/null || true
  for _ in $(seq 1 "$3"); do kill -0 "$2" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$2" 2>/dev/null && kill -KILL "$2" 2>/dev/null
  wait "$2" 2>/dev/null || true
  forget_pid "$2"
}

stop_server() {
  [ -n "$SERVER_PID" ] || return 0
  stop_pid TERM "$SERVER_PID" 150
  SERVER_PID=""
  SERVER_PORT=""
}

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# --- nginx ---------------------------------------------------------------------------------------

# start_nginx ROOT_DIR: one worker process serving ROOT_DIR on a free loopback port, as
# application/json, without access log. Sets NGINX_PID and NGINX_PORT.
start_nginx() {
  local root=$1 dir=$WORK/nginx
  mkdir -p "$dir/tmp"
  chmod -R a+rX "$root"
  NGINX_PORT=$(free_port)
  cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  default_type application/json;
  client_body_temp_path $dir/tmp/body;
  proxy_temp_path $dir/tmp/proxy;
  fastcgi_temp_path $dir/tmp/fastcgi;
  uwsgi_temp_path $dir/tmp/uwsgi;
  scgi_temp_path $dir/tmp/scgi;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$NGINX_PORT;
    root $root;
  }
}
EOF
  nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" >"$dir/stdout.log" 2>&1 &
  NGINX_PID=$!
  STARTED_PIDS+=("$NGINX_PID")
  for _ in $(seq 1 100); do
    kill -0 "$NGINX_PID" 2>/dev/null || die "nginx exited: $(cat "$dir/stdout.log" "$dir/error.log" 2>/dev/null | tail -5)"
    curl -s --max-time 2 -o /dev/null "http://127.0.0.1:$NGINX_PORT/" && return 0
    sleep 0.1
  done
  die "nginx did not start"
}

stop_nginx() {
  [ -n "$NGINX_PID" ] || return 0
  stop_pid QUIT "$NGINX_PID" 100
  NGINX_PID=""
}

# --- wrk -----------------------------------------------------------------------------------------

# run_wrk NAME DURATION WRK_ARGS...: runs wrk with --latency and loadtest/report.lua (unless a
# script is given), keeps its output in $WORK/NAME.wrk and prints nothing. The last line that
# report.lua prints is `WRK_JSON {...}`; wrk_field NAME KEY reads it.
run_wrk() {
  local name=$1 duration=$2
  shift 2
  local has_script=0 a
  for a in "$@"; do [ "$a" = -s ] && has_script=1; done
  local extra=()
  [ "$has_script" = 1 ] || extra=(-s "$LOADTEST_DIR/report.lua")
  timeout --foreground --kill-after=5 $((duration + 60)) wrk --latency --timeout 10s -d "${duration}s" "${extra[@]}" "$@" \
    >"$WORK/$name.wrk" 2>&1 || die "wrk $name failed: $(tail -5 "$WORK/$name.wrk")"
  grep -q '^WRK_JSON ' "$WORK/$name.wrk" || die "wrk $name printed no result: $(tail -5 "$WORK/$name.wrk")"
}

wrk_field() {
  grep '^WRK_JSON ' "$WORK/$1.wrk" | tail -1 | sed 's/^WRK_JSON //' |
    "$PYTHON" -c 'import json, sys; v = json.load(sys.stdin).get(sys.argv[1], ""); print(v if not isinstance(v, (dict, list)) else json.dumps(v))' "$2"
}

# --- numbers -------------------------------------------------------------------------------------

# calc EXPR: floating point arithmetic for reports ("-" when a term is missing or zero-division).
calc() {
  "$PYTHON" -c '
import sys
try:
    print(format(eval(sys.argv[1], {"__builtins__": {}}), sys.argv[2] if len(sys.argv) > 2 else ".2f"))
except Exception:
    print("-")' "$@"
}

us_to_ms() { calc "$1 / 1000.0" .2f; }

# mint_tokens FIRST COUNT FILE: HS256 tokens for user ids FIRST..FIRST+COUNT-1, one a line.
mint_tokens() {
  "$PYTHON" "$LOADTEST_DIR/jwt_mint.py" --secret "$JWT_SECRET" --first "$1" --count "$2" >"$3" ||
    die "minting tokens failed"
}

# result_line KIND JSON: the machine-readable result, on stdout, prefixed so it can be grepped.
result_line() { say "RESULT $1 $2"; }
