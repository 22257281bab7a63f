#!/usr/bin/python3
"""The Grafana dashboards of Vote, defined once here; writes

  deploy/grafana/dashboards/<uid>.json   the dashboards Grafana provisions (docker-compose.yml)
  deploy/grafana/queries.yaml            every panel query, machine-readable (tests/ops evaluates
                                         each against a live Prometheus)

  dashboards.py           rewrite both
  dashboards.py --check   exit 1 if either differs from what this file would write

tests/ops/run runs --check, and separately compares queries.yaml with the targets found in the
JSON files, so a dashboard edited in Grafana and exported over a JSON file cannot drift from
queries.yaml unnoticed (re-run this script, or port the edit here).

Queries read the recording rules of deploy/prometheus/rules where one exists. `$instance` is
the dashboard's instance variable (regex, "All" = .+).
"""
import json
import os
import re
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}  # provisioning/datasources/prometheus.yml
I = '{instance=~"$instance"}'


def exporters_of(expr):
    """The exporters a query needs data from (beyond the server's own /metrics): those whose
    metric prefix (pg_, redis_, rabbitmq_, haproxy_) appears in a metric name, recorded names included
    (instance:pg_up:min), or whose job is selected exactly (job="postgres")."""
    need = set()
    jobs = {"pg": "postgres", "redis": "redis", "rabbitmq": "rabbitmq", "haproxy": "haproxy"}
    for job in jobs.values():
        if f'job="{job}"' in expr:
            need.add(job)
    bare = re.sub(r'"[^"]*"', '""', expr)
    for name in re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", bare):
        for part in name.split(":"):
            prefix = part.split("_", 1)[0]
            if "_" in part and prefix in jobs:
                need.add(jobs[prefix])
    return sorted(need)


def panel(title, unit, queries, kind="timeseries", description="", stack=False, minmax=None):
    return {"title": title, "unit": unit, "queries": queries, "kind": kind, "description": description,
            "stack": stack, "minmax": minmax}


def row(title, *panels):
    return {"row": title, "panels": list(panels)}


DASHBOARDS = [
    {
        "uid": "vote-overview",
        "title": "Vote / Overview",
        "description": "Traffic, errors, latency and saturation of every Vote instance.",
        "instance_var": True,
        "rows": [
            row("Traffic",
                panel("Requests per second by instance", "reqps",
                      [(f"instance:http_requests:rate1m{I}", "{{instance}}")], stack=True),
                panel("Requests per second by status class", "reqps",
                      [(f"instance_status_class:http_requests:rate1m{I}", "{{instance}} {{status_class}}")]),
                panel("Requests per second by route", "reqps",
                      [("route:http_requests:rate1m", "{{route}}")]),
                panel("Instances up", "none",
                      [('up{job="vote"}', "{{instance}}")], kind="stat",
                      description="1 = scraped; 0 = VoteInstanceDown after a minute."),
                panel("Load balancer: answers by status class", "reqps",
                      [("code:haproxy_frontend_http_responses:rate1m", "{{code}}")],
                      description="What clients got, the balancer's own 503s included (no instance in rotation)."),
                panel("Load balancer: instances in rotation", "none",
                      [('proxy:haproxy_backend_active_servers:min{proxy="vote"}', "in rotation")], kind="stat")),
            row("Errors",
                panel("5xx share of client requests", "percentunit",
                      [(f"instance:http_requests_5xx:ratio_rate1m{I}", "{{instance}}"),
                       ("job:http_requests_5xx:ratio_rate5m", "all, 5m (alert: >1% warning, >5% critical)")],
                      description="Probes (/metrics, /readyz, /healthz) left out."),
                panel("4xx share of client requests", "percentunit",
                      [("job:http_requests_4xx:ratio_rate1m", "all")]),
                panel("4xx and 5xx answers by route", "reqps",
                      [('route_status:http_requests:rate1m{status=~"4..|5.."}', "{{route}} {{status}}")])),
            row("Latency",
                panel("p99 by route", "s",
                      [('route:http_request_duration_seconds:p99{route=~"/api/.*"}', "{{route}}")]),
                panel("p50 by route", "s",
                      [('route:http_request_duration_seconds:p50{route=~"/api/.*"}', "{{route}}")]),
                panel("p99 and p50 by instance (API routes)", "s",
                      [(f"instance:http_request_duration_seconds:p99{I}", "p99 {{instance}}"),
                       (f"instance:http_request_duration_seconds:p50{I}", "p50 {{instance}}")]),
                panel("Vote latency SLO: share of votes of 100 ms or more", "percentunit",
                      [("job:vote_latency_slo_errors:ratio_rate5m", "5m"),
                       ("job:vote_latency_slo_errors:ratio_rate1h", "1h")],
                      description="SLO: 99.9% of votes under 100 ms (budget 0.1%)."),
                panel("Vote latency SLO: burn rate (1h)", "none",
                      [("job:vote_latency_slo_burn:rate1h", "burn rate")],
                      description="1 = budget spent in exactly 30 days; the fast-burn page fires at 14.4.")),
            row("Saturation",
                panel("Requests in flight", "none",
                      [(f"instance:http_requests_in_flight:max{I}", "{{instance}}")]),
                panel("CPU (cores)", "none",
                      [(f"instance:process_cpu_seconds:rate1m{I}", "{{instance}}")]),
                panel("Resident memory", "bytes",
                      [(f"instance:process_resident_memory_bytes:max{I}", "{{instance}}")]),
                panel("PostgreSQL pool: waiting requests and idle connections", "none",
                      [(f"instance:vote_pg_pool_waiting:max{I}", "waiting {{instance}}"),
                       (f"instance:vote_pg_pool_idle:min{I}", "idle {{instance}}"),
                       (f"instance:vote_pg_pool_size:max{I}", "limit {{instance}}")],
                      description="The pool of the thread that served the scrape; each thread has its own."),
                panel("Load shed (503 past a bound) by reason", "reqps",
                      [(f"instance_reason:vote_load_shed:rate1m{I}", "{{instance}} {{reason}}")]),
                panel("Rate-limit refusals by kind", "reqps",
                      [("job_kind:vote_rate_limited:rate1m", "{{kind}}")])),
        ],
    },
    {
        "uid": "vote-votes-feed",
        "title": "Vote / Votes and feed",
        "description": "Votes, skips, polls, group commit, the feed and its caches.",
        "instance_var": True,
        "rows": [
            row("Votes",
                panel("Votes per second by outcome", "ops",
                      [("job_outcome:vote_votes:rate1m", "{{outcome}}")], stack=True),
                panel("Accepted votes per second by instance", "ops",
                      [(f"instance:vote_votes_accepted:rate1m{I}", "{{instance}}")], stack=True),
                panel("Skips and polls created per second", "ops",
                      [("job:vote_skips:rate1m", "skips"), ("job:vote_polls_created:rate1m", "polls created")]),
                panel("Votes per transaction (mean)", "none",
                      [("job:vote_vote_batch_size:mean1m", "votes per group")]),
                panel("Vote latency", "s",
                      [('route:http_request_duration_seconds:p99{route="/api/polls/{id}/vote"}', "p99"),
                       ('route:http_request_duration_seconds:p95{route="/api/polls/{id}/vote"}', "p95"),
                       ('route:http_request_duration_seconds:p50{route="/api/polls/{id}/vote"}', "p50")])),
            row("Feed",
                panel("Feed pages per second", "reqps",
                      [("job:vote_feed_requests:rate1m", "GET /api/polls")]),
                panel("Feed latency", "s",
                      [('route:http_request_duration_seconds:p99{route="/api/polls"}', "p99"),
                       ('route:http_request_duration_seconds:p50{route="/api/polls"}', "p50")]),
                panel("Feed checks by result", "ops",
                      [("job_result:vote_feed_checks:rate1m", "{{result}}")],
                      description="behind: the instance's answered set lagged the database (ids probed)."),
                panel("Share of feed checks behind", "percentunit",
                      [(f"instance:vote_feed_checks_behind:ratio_rate5m{I}", "{{instance}}")]),
                panel("Feed index and cached answered sets", "none",
                      [(f"instance:vote_feed_index_polls:max{I}", "polls indexed {{instance}}"),
                       (f"instance:vote_feed_cached_users:max{I}", "users cached {{instance}}")]),
                panel("Cache hit ratio", "percentunit",
                      [("job_cache:vote_cache_hits:ratio_rate1m", "{{cache}}")])),
            row("Accounts",
                panel("Registrations and logins per second", "ops",
                      [("job_outcome:vote_registrations:rate1m", "register {{outcome}}"),
                       ("job_outcome:vote_logins:rate1m", "login {{outcome}}")])),
        ],
    },
    {
        "uid": "vote-realtime",
        "title": "Vote / Real time",
        "description": "WebSocket sessions, fan-out, event delivery and the outbox.",
        "instance_var": True,
        "rows": [
            row("WebSocket",
                panel("Open WebSocket sessions", "none",
                      [(f"instance:vote_websocket_connections:sum{I}", "{{instance}}"),
                       ("job:vote_websocket_connections:sum", "all")]),
                panel("WebSocket messages per second", "ops",
                      [("job_direction:vote_websocket_messages:rate1m", "{{direction}}")],
                      description="out: stats pushes and poll_created (the fan-out); in: subscribe/unsubscribe."),
                panel("Pushes per event consumed", "none",
                      [("job:vote_websocket_pushes_per_event:ratio_rate1m", "fan-out factor")])),
            row("Events",
                panel("Events consumed per second by instance", "ops",
                      [(f"instance:vote_events_consumed:rate1m{I}", "{{instance}}")]),
                panel("Events consumed per second by type", "ops",
                      [("job_type:vote_events_consumed:rate1m", "{{type}}")]),
                panel("Delivery lag (commit to arrival, last event)", "s",
                      [(f"instance:vote_events_consumer_lag_seconds:max{I}", "{{instance}}")],
                      description="Alert VoteEventConsumerLag above 5 s for 5 minutes."),
                panel("Relay: messages by state per second", "ops",
                      [("job_state:vote_events:rate1m", "{{state}}")])),
            row("Outbox",
                panel("Outbox backlog", "none",
                      [("job:vote_outbox_backlog:max", "rows")]),
                panel("Oldest outbox event", "s",
                      [("job:vote_outbox_oldest_age_seconds:max", "age")],
                      description="Alert VoteOutboxLagging above 60 s (warning) and 300 s (critical)."),
                panel("Broker: messages waiting in queues", "none",
                      [("instance:rabbitmq_queue_messages_ready:sum", "ready"),
                       ("instance:rabbitmq_queue_messages_unacked:sum", "unacked")])),
        ],
    },
    {
        "uid": "vote-dependencies",
        "title": "Vote / Dependencies",
        "description": "PostgreSQL, Redis and RabbitMQ, as the instances see them and from their exporters.",
        "instance_var": True,
        "rows": [
            row("Seen by the instances",
                panel("Dependency up (last readiness check)", "none",
                      [(f"instance_dependency:vote_dependency_up:min{I}", "{{instance}} {{dependency}}")]),
                panel("Redis client connected; rate limits on local fallback", "none",
                      [(f"instance:vote_redis_connected:min{I}", "connected {{instance}}"),
                       (f"instance:vote_ratelimit_local_fallback:max{I}", "fallback {{instance}}")]),
                panel("Exporters and broker scraped", "none",
                      [('up{job=~"postgres|redis|rabbitmq"}', "{{job}}")], kind="stat")),
            row("PostgreSQL",
                panel("PostgreSQL up", "none", [("instance:pg_up:min", "{{instance}}")], kind="stat"),
                panel("Connections by state", "none",
                      [("instance_state:pg_connections:sum", "{{state}}")], stack=True),
                panel("Connections used of max_connections", "percentunit",
                      [("instance:pg_connections:ratio", "{{instance}}")]),
                panel("Transactions per second", "ops",
                      [("instance:pg_xact_commit:rate1m", "commit"), ("instance:pg_xact_rollback:rate1m", "rollback")]),
                panel("Buffer cache hit ratio", "percentunit",
                      [("instance:pg_blks_hit:ratio_rate5m", "{{instance}}")]),
                panel("Database size", "bytes",
                      [("instance_datname:pg_database_size_bytes:max", "{{datname}}")]),
                panel("Disk budget used", "percentunit",
                      [("instance:pg_database_size_budget:ratio", "{{instance}}")],
                      description="Sum of database sizes over vote:pg_database_size_budget_bytes."),
                panel("Longest open transaction", "s",
                      [("instance:pg_max_tx_duration_seconds:max", "{{instance}}")]),
                panel("Deadlocks per second", "ops",
                      [("instance:pg_deadlocks:rate5m", "{{instance}}")])),
            row("Redis",
                panel("Redis up", "none", [("instance:redis_up:min", "{{instance}}")], kind="stat"),
                panel("Memory used of maxmemory", "percentunit",
                      [("instance:redis_memory_used:ratio", "{{instance}}")]),
                panel("Memory used", "bytes",
                      [("instance:redis_memory_used_bytes:max", "{{instance}}")]),
                panel("Commands per second", "ops",
                      [("instance:redis_commands:rate1m", "{{instance}}")]),
                panel("Keyspace hit ratio", "percentunit",
                      [("instance:redis_keyspace_hits:ratio_rate1m", "{{instance}}")]),
                panel("Evicted keys per second and clients", "none",
                      [("instance:redis_evicted_keys:rate5m", "evictions/s"),
                       ("instance:redis_connected_clients:max", "clients")])),
            row("RabbitMQ",
                panel("Messages received and delivered per second", "ops",
                      [("instance:rabbitmq_messages_received:rate1m", "received"),
                       ("instance:rabbitmq_messages_delivered:rate1m", "delivered")]),
                panel("Messages waiting", "none",
                      [("instance:rabbitmq_queue_messages_ready:sum", "ready"),
                       ("instance:rabbitmq_queue_messages_unacked:sum", "unacked")]),
                panel("Connections", "none",
                      [("instance:rabbitmq_connections:sum", "{{instance}}")]),
                panel("Memory used of the high watermark", "percentunit",
                      [("instance:rabbitmq_memory_used:ratio", "{{instance}}")]),
                panel("Free disk over disk_free_limit", "none",
                      [("instance:rabbitmq_disk_free_over_limit:ratio", "{{instance}}")]),
                panel("Resource alarms", "none",
                      [('rabbitmq_alarms_memory_used_watermark{job="rabbitmq"}', "memory"),
                       ('rabbitmq_alarms_free_disk_space_watermark{job="rabbitmq"}', "disk")], kind="stat")),
        ],
    },
]


def build(d):
    panels = []
    y = 0
    pid = 1
    for r in d["rows"]:
        panels.append({"id": pid, "type": "row", "title": r["row"], "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        pid += 1
        y += 1
        x = 0
        for p in r["panels"]:
            w = 6 if p["kind"] == "stat" else 8
            if x + w > 24:
                x = 0
                y += 8
            targets = [{"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": e, "legendFormat": legend,
                        "range": True}
                       for i, (e, legend) in enumerate(p["queries"])]
            defaults = {"unit": p["unit"]}
            if p["kind"] == "timeseries":
                defaults["custom"] = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never",
                                      "spanNulls": True,
                                      "stacking": {"mode": "normal" if p["stack"] else "none", "group": "A"}}
                options = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                           "tooltip": {"mode": "multi", "sort": "desc"}}
            else:
                options = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                           "colorMode": "background", "graphMode": "none", "textMode": "auto"}
                defaults["thresholds"] = {"mode": "absolute", "steps": [{"color": "red", "value": None},
                                                                        {"color": "green", "value": 1}]}
            panels.append({"id": pid, "type": p["kind"], "title": p["title"], "description": p["description"],
                           "datasource": DATASOURCE, "gridPos": {"h": 8, "w": w, "x": x, "y": y},
                           "targets": targets, "fieldConfig": {"defaults": defaults, "overrides": []},
                           "options": options})
            pid += 1
            x += w
        y += 8
    templating = []
    if d["instance_var"]:
        templating.append({
            "name": "instance", "label": "instance", "type": "query", "datasource": DATASOURCE,
            "definition": 'label_values(up{job="vote"}, instance)',
            "query": {"query": 'label_values(up{job="vote"}, instance)', "refId": "instances"},
            "refresh": 2, "multi": True, "includeAll": True, "allValue": ".+",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]}, "sort": 1})
    return {
        "uid": d["uid"], "title": d["title"], "description": d["description"], "tags": ["vote"],
        "timezone": "browser", "schemaVersion": 38, "version": 1, "editable": True, "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"}, "graphTooltip": 1,
        "links": [{"type": "dashboards", "tags": ["vote"], "asDropdown": True, "title": "Vote dashboards"}],
        "templating": {"list": templating}, "annotations": {"list": []}, "panels": panels,
    }


def queries():
    out = []
    for d in DASHBOARDS:
        for r in d["rows"]:
            for p in r["panels"]:
                for i, (e, _) in enumerate(p["queries"]):
                    out.append({"dashboard": d["uid"], "row": r["row"], "panel": p["title"],
                                "ref": chr(ord("A") + i), "expr": e, "requires": exporters_of(e)})
    return out


def outputs():
    files = {}
    for d in DASHBOARDS:
        files[os.path.join(HERE, "dashboards", d["uid"] + ".json")] = json.dumps(build(d), indent=2) + "\n"
    header = ("# Every query of every panel of deploy/grafana/dashboards/*.json, generated with them by\n"
              "# deploy/grafana/dashboards.py (do not edit). `requires` names the exporters whose data the\n"
              "# query needs besides the server's /metrics; tests/ops evaluates each query against a live\n"
              "# Prometheus and skips those whose exporter did not run. `$instance` is the dashboards'\n"
              "# instance variable (a regex; All = .+).\n")
    files[os.path.join(HERE, "queries.yaml")] = header + yaml.safe_dump(
        {"queries": queries()}, sort_keys=False, width=200, allow_unicode=True)
    return files


def main():
    check = "--check" in sys.argv[1:]
    stale = []
    for path, text in outputs().items():
        current = open(path, encoding="utf-8").read() if os.path.exists(path) else None
        if current != text:
            stale.append(path)
            if not check:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w", encoding="utf-8") as f:
                    f.write(text)
    if check and stale:
        for p in stale:
            print(f"dashboards.py --check: {os.path.relpath(p, HERE)} is not what dashboards.py writes", file=sys.stderr)
        sys.exit(1)
    if not check:
        print(f"dashboards.py: wrote {len(stale)} file(s)" if stale else "dashboards.py: up to date")


if __name__ == "__main__":
    main()
