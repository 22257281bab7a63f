"""Static checks of the operations kit (no server needed). One `PASS: ` / `FAIL: ` line each.

- rules: every alert has a severity (critical, warning, none), a summary, a description and a
  runbook_url docs/RUNBOOK.md#<alert name in lower case>; that section exists in the runbook;
  every alert has a promtool unit test in tests/ops/rules that expects it to fire;
- metrics: every server metric the rules and dashboards name is declared in
  src/metrics/metrics.cpp; every recorded name they read is recorded by a rule;
- the SLO: its threshold (le="0.1") is a bucket boundary of http_request_duration_seconds;
- dashboards: deploy/grafana/dashboards.py --check; queries.yaml lists exactly the targets of the
  dashboard JSON files; every panel uses the provisioned datasource;
- Prometheus config: a local rendering (scripts/observe's targets) agrees with the template
  (render.py --check);
- docker-compose.yml: parses (yaml.safe_load), keeps its required secrets, mounts files that
  exist, and agrees with prometheus.yml (targets), haproxy.cfg (servers, ports), the Grafana
  provisioning (paths, datasource URL) and the RabbitMQ plugin file.
"""
import glob
import json
import os
import re
import subprocess
import sys
import tempfile

import yaml

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
DEPLOY = os.path.join(ROOT, "deploy")
results = {"PASS": 0, "FAIL": 0}


def check(name, problems):
    problems = [p for p in problems if p]
    kind = "FAIL" if problems else "PASS"
    results[kind] += 1
    print(f"{kind}: {name}" + (" -- " + "; ".join(problems[:12]) + (f" (+{len(problems) - 12} more)" if len(problems) > 12 else "")
                               if problems else ""), flush=True)


def load_yaml(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def rules():
    out = []
    for path in sorted(glob.glob(os.path.join(DEPLOY, "prometheus", "rules", "*.yml"))):
        for g in load_yaml(path)["groups"]:
            for r in g["rules"]:
                out.append((os.path.basename(path), g["name"], r))
    return out


def github_slug(heading):
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


KEYWORDS = {"sum", "min", "max", "avg", "count", "by", "without", "on", "ignoring", "group_left", "group_right",
            "and", "or", "unless", "bool", "offset", "rate", "irate", "increase", "deriv", "predict_linear",
            "histogram_quantile", "label_replace", "min_over_time", "max_over_time", "vector", "scalar",
            "round", "abs", "absent", "topk", "bottomk", "inf", "nan", "le"}


def metric_names(expr):
    """Metric and recorded names an expression selects."""
    e = re.sub(r'"[^"]*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", "", e)
    e = re.sub(r"\[[^\]]*\]", "", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", e)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        tok = m.group(0)
        rest = e[m.end():].lstrip()
        if rest.startswith("(") or tok.lower() in KEYWORDS or re.fullmatch(r"[0-9].*", tok):
            continue
        names.add(tok)
    return names


def declared_metrics():
    src = open(os.path.join(ROOT, "src", "metrics", "metrics.cpp"), encoding="utf-8").read()
    names = set(re.findall(r'\.Name\("([a-z_:]+)"\)', src)) | set(re.findall(r"# TYPE ([a-z_]+) ", src))
    hist = set(re.findall(r'BuildHistogram\(\)\.Name\("([a-z_]+)"\)', src))
    for h in hist:
        names |= {h + "_bucket", h + "_sum", h + "_count"}
    return names, src


def main():
    all_rules = rules()
    alerts = [(f, g, r) for f, g, r in all_rules if "alert" in r]
    records = {r["record"] for _, _, r in all_rules if "record" in r}
    runbook = open(os.path.join(ROOT, "docs", "RUNBOOK.md"), encoding="utf-8").read()
    anchors = {github_slug(h) for h in re.findall(r"^#{1,4} (.+)$", runbook, re.M)}
    anchors |= set(re.findall(r'<a (?:id|name)="([^"]+)"', runbook))

    # Alerts: labels and annotations.
    problems = []
    for f, g, r in alerts:
        a = r["alert"]
        sev = r.get("labels", {}).get("severity")
        if sev not in ("critical", "warning", "none"):
            problems.append(f"{a}: severity {sev!r}")
        ann = r.get("annotations", {})
        for key in ("summary", "description", "runbook_url"):
            if not ann.get(key):
                problems.append(f"{a}: no {key}")
        want = f"docs/RUNBOOK.md#{a.lower()}"
        if ann.get("runbook_url") != want:
            problems.append(f"{a}: runbook_url {ann.get('runbook_url')!r}, expected {want!r}")
        if a.lower() not in anchors:
            problems.append(f"{a}: docs/RUNBOOK.md has no section #{a.lower()}")
    check(f"{len(alerts)} alerts have a severity, a summary, a description and a runbook section", problems)

    # Every runbook alert section belongs to an alert (no stale sections).
    names = {r["alert"] for _, _, r in alerts}
    sections = re.findall(r"^### ([A-Z][A-Za-z0-9]+)\s*$", runbook, re.M)
    check("every alert section of the runbook names an existing alert",
          [f"section {s} has no alert" for s in sections if s not in names])

    # Every alert has a unit test that expects it to fire.
    tested = set()
    for path in glob.glob(os.path.join(HERE, "rules", "*.test.yml")):
        for t in load_yaml(path).get("tests", []):
            for at in t.get("alert_rule_test", []):
                if at.get("exp_alerts"):
                    tested.add(at["alertname"])
    check("every alert has a promtool test that expects it to fire",
          [f"{a} is never expected to fire in tests/ops/rules" for a in sorted(names - tested)])

    # Metric names.
    declared, metrics_src = declared_metrics()
    with open(os.path.join(DEPLOY, "grafana", "queries.yaml"), encoding="utf-8") as f:
        queries = yaml.safe_load(f)["queries"]
    exprs = [("rule " + (r.get("record") or r.get("alert")), r["expr"]) for _, _, r in all_rules]
    exprs += [(f"panel {q['dashboard']}/{q['panel']}", q["expr"]) for q in queries]
    problems = []
    for where, e in exprs:
        for n in metric_names(e):
            if ":" in n:
                if n not in records:
                    problems.append(f"{where}: {n} is recorded by no rule")
            elif n.startswith(("vote_", "http_", "process_")) and n not in declared:
                problems.append(f"{where}: {n} is not declared in src/metrics/metrics.cpp")
    check("every server metric named is declared in metrics.cpp, every recorded name is recorded", problems)

    # The SLO threshold is a bucket boundary.
    m = re.search(r"kBuckets\{([^}]*)\}", metrics_src)
    buckets = [float(x) for x in m.group(1).replace("\n", " ").split(",")] if m else []
    slo = open(os.path.join(DEPLOY, "prometheus", "rules", "vote-slo.yml"), encoding="utf-8").read()
    les = set(re.findall(r'le="([0-9.]+)"', slo))
    check("the vote latency SLO threshold is a bucket boundary of http_request_duration_seconds",
          [f"no kBuckets in metrics.cpp" if not buckets else ""] +
          [f'le="{le}" is not one of {buckets}' for le in les if float(le) not in buckets] +
          ["vote-slo.yml has no le selector" if not les else ""])

    # Dashboards.
    r = subprocess.run([sys.executable, "-B", os.path.join(DEPLOY, "grafana", "dashboards.py"), "--check"],
                       capture_output=True, text=True)
    check("dashboard JSON and queries.yaml are what deploy/grafana/dashboards.py writes",
          [r.stderr.strip()] if r.returncode else [])
    ds = load_yaml(os.path.join(DEPLOY, "grafana", "provisioning", "datasources", "prometheus.yml"))["datasources"]
    ds_uids = {d["uid"] for d in ds}
    from_json, problems, uids = [], [], set()
    for path in sorted(glob.glob(os.path.join(DEPLOY, "grafana", "dashboards", "*.json"))):
        d = json.load(open(path, encoding="utf-8"))
        if d["uid"] in uids:
            problems.append(f"duplicate uid {d['uid']}")
        uids.add(d["uid"])
        for p in d["panels"]:
            if p["type"] == "row":
                continue
            if p.get("datasource", {}).get("uid") not in ds_uids:
                problems.append(f"{d['uid']}/{p['title']}: datasource {p.get('datasource')} is not provisioned")
            for t in p["targets"]:
                if t.get("datasource", {}).get("uid") not in ds_uids:
                    problems.append(f"{d['uid']}/{p['title']}/{t['refId']}: datasource not provisioned")
                from_json.append((d["uid"], p["title"], t["refId"], t["expr"]))
    listed = [(q["dashboard"], q["panel"], q["ref"], q["expr"]) for q in queries]
    problems += [f"in the JSON, not in queries.yaml: {x}" for x in from_json if x not in listed]
    problems += [f"in queries.yaml, not in the JSON: {x}" for x in listed if x not in from_json]
    need = {"vote-overview", "vote-votes-feed", "vote-realtime", "vote-dependencies"}
    problems += [f"no dashboard {u}" for u in need - uids]
    check(f"queries.yaml lists the {len(from_json)} targets of the dashboard JSON; every panel uses a provisioned datasource",
          problems)

    # The local rendering of the Prometheus config agrees with the template.
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "prometheus.yml")
        render = os.path.join(DEPLOY, "prometheus", "render.py")
        r1 = subprocess.run([sys.executable, "-B", render, "--out", out, "--alertmanager", "127.0.0.1:9093",
                             "--target", "vote=127.0.0.1:8080", "--target", "postgres=127.0.0.1:9187",
                             "--target", "redis=127.0.0.1:9121", "--target", "rabbitmq=127.0.0.1:15692",
                             "--target", "prometheus=127.0.0.1:9090", "--target", "alertmanager=127.0.0.1:9093"],
                            capture_output=True, text=True)
        r2 = subprocess.run([sys.executable, "-B", render, "--check", out], capture_output=True, text=True)
        r3 = subprocess.run(["promtool", "check", "config", "--syntax-only", out], capture_output=True, text=True)
        check("scripts/observe's rendering of prometheus.yml agrees with the template and is valid",
              [r1.stderr.strip() if r1.returncode else "", r2.stderr.strip() if r2.returncode else "",
               (r3.stdout + r3.stderr).strip() if r3.returncode else ""])

    check_compose()
    print(f"static: {results['PASS']} passed, {results['FAIL']} failed", flush=True)
    sys.exit(1 if results["FAIL"] else 0)


def check_compose():
    path = os.path.join(ROOT, "docker-compose.yml")
    raw = open(path, encoding="utf-8").read()
    try:
        doc = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        check("docker-compose.yml parses", [str(e)])
        return
    check("docker-compose.yml parses", [])
    services = doc.get("services", {})
    problems = []
    want = {"postgres", "redis", "rabbitmq", "migrate", "app1", "app2", "lb", "postgres-exporter", "redis-exporter",
            "prometheus", "alertmanager", "grafana"}
    problems += [f"no service {s}" for s in sorted(want - set(services))]
    for secret in ("VOTE_JWT_SECRET_KEY", "VOTE_POSTGRES_PASSWORD", "VOTE_RABBITMQ_PASSWORD"):
        if not re.search(r"\$\{" + secret + r":\?", raw):
            problems.append(f"{secret} is not required (${{{secret}:?...}})")
    for app in ("migrate", "app1", "app2"):
        env = services.get(app, {}).get("environment", {})
        if env.get("VOTE_SERVER_ENV") != "production":
            problems.append(f"{app} does not run with server.env production")
        for var in ("VOTE_JWT_SECRET_KEY", "VOTE_POSTGRES_PASSWORD", "VOTE_RABBITMQ_PASSWORD"):
            if not str(env.get(var, "")).startswith("${" + var + ":?"):
                problems.append(f"{app}: {var} is not the required variable")
    # Bind mounts exist.
    mounts = {}
    for name, svc in services.items():
        for v in svc.get("volumes", []) or []:
            src, _, rest = v.partition(":")
            dst = rest.split(":")[0]
            if src.startswith("./"):
                if not os.path.exists(os.path.join(ROOT, src)):
                    problems.append(f"{name}: {src} does not exist")
                mounts.setdefault(name, {})[src] = dst
    check("docker-compose.yml has every service, keeps its required secrets, and its mounts exist", problems)

    problems = []
    # Prometheus: config and rules mounted where the command reads them.
    prom = services.get("prometheus", {})
    if mounts.get("prometheus", {}).get("./deploy/prometheus") != "/etc/prometheus":
        problems.append("prometheus does not mount ./deploy/prometheus at /etc/prometheus")
    if "--config.file=/etc/prometheus/prometheus.yml" not in prom.get("command", []):
        problems.append("prometheus does not read /etc/prometheus/prometheus.yml")
    am = services.get("alertmanager", {})
    if mounts.get("alertmanager", {}).get("./deploy/alertmanager") != "/etc/alertmanager" or \
            "--config.file=/etc/alertmanager/alertmanager.yml" not in am.get("command", []):
        problems.append("alertmanager does not read deploy/alertmanager/alertmanager.yml")
    # Scrape targets are compose services on the ports they listen on.
    hap = open(os.path.join(DEPLOY, "haproxy", "haproxy.cfg"), encoding="utf-8").read()
    hap_metrics = re.search(r"frontend metrics\n  bind :(\d+)", hap)
    listen = {"app1": "8080", "app2": "8080", "postgres-exporter": "9187", "redis-exporter": "9121",
              "rabbitmq": "15692", "alertmanager": "9093", "localhost": "9090",
              "lb": hap_metrics.group(1) if hap_metrics else "?"}
    cfg = load_yaml(os.path.join(DEPLOY, "prometheus", "prometheus.yml"))
    for job in cfg["scrape_configs"]:
        for sc in job["static_configs"]:
            for t in sc["targets"]:
                host, _, port = t.rpartition(":")
                if host != "localhost" and host not in services:
                    problems.append(f"job {job['job_name']}: target {t} is not a compose service")
                elif listen.get(host) != port:
                    problems.append(f"job {job['job_name']}: {host} listens on {listen.get(host)}, not {port}")
    for sc in cfg["alerting"]["alertmanagers"]:
        for t in sc["static_configs"][0]["targets"]:
            if t.split(":")[0] not in services:
                problems.append(f"alertmanager target {t} is not a compose service")
    jobs = {j["job_name"] for j in cfg["scrape_configs"]}
    problems += [f"prometheus.yml has no job {j}" for j in ("vote", "postgres", "redis", "rabbitmq") if j not in jobs]
    vote_targets = {t.split(":")[0] for j in cfg["scrape_configs"] if j["job_name"] == "vote"
                    for sc in j["static_configs"] for t in sc["targets"]}
    apps = {s for s in services if re.fullmatch(r"app\d+", s)}
    if vote_targets != apps:
        problems.append(f"job vote scrapes {sorted(vote_targets)}, the app services are {sorted(apps)}")
    check("prometheus.yml's targets are the compose services, on their ports; rules and config are mounted", problems)

    problems = []
    servers = dict(re.findall(r"^\s+server (\S+) (\S+)", hap, re.M))
    if {v.split(":")[0] for v in servers.values()} != apps:
        problems.append(f"haproxy servers {servers} are not the app services {sorted(apps)}")
    if any(not v.endswith(":8080") for v in servers.values()):
        problems.append("haproxy servers are not on the instances' port 8080")
    if "uri /readyz" not in hap:
        problems.append("haproxy does not check /readyz")
    lb = services.get("lb", {})
    if mounts.get("lb", {}).get("./deploy/haproxy/haproxy.cfg") != "/usr/local/etc/haproxy/haproxy.cfg":
        problems.append("lb does not mount deploy/haproxy/haproxy.cfg")
    lb_ip = (lb.get("networks", {}).get("vote") or {}).get("ipv4_address")
    for app in apps:
        trusted = services[app].get("environment", {}).get("VOTE_SERVER_TRUSTED_PROXIES")
        if trusted != lb_ip:
            problems.append(f"{app} trusts {trusted!r}, the balancer is {lb_ip!r}")
    if not any(str(p).endswith(":8080") for p in lb.get("ports", [])):
        problems.append("lb does not publish 8080")
    check("haproxy.cfg balances the app services on /readyz; the apps trust the balancer's address", problems)

    problems = []
    gmounts = mounts.get("grafana", {})
    if gmounts.get("./deploy/grafana/provisioning") != "/etc/grafana/provisioning":
        problems.append("grafana does not mount the provisioning directory")
    prov = load_yaml(os.path.join(DEPLOY, "grafana", "provisioning", "dashboards", "vote.yml"))
    paths = [p["options"]["path"] for p in prov["providers"]]
    if gmounts.get("./deploy/grafana/dashboards") not in paths:
        problems.append(f"dashboards are mounted at {gmounts.get('./deploy/grafana/dashboards')}, the provider reads {paths}")
    ds = load_yaml(os.path.join(DEPLOY, "grafana", "provisioning", "datasources", "prometheus.yml"))["datasources"]
    if [d["url"] for d in ds] != ["http://prometheus:9090"]:
        problems.append(f"datasource URL {[d['url'] for d in ds]} is not the prometheus service")
    home = services.get("grafana", {}).get("environment", {}).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH", "")
    if home and not os.path.exists(os.path.join(DEPLOY, "grafana", "dashboards", os.path.basename(home))):
        problems.append(f"home dashboard {home} does not exist")
    rmq = mounts.get("rabbitmq", {})
    if rmq.get("./deploy/rabbitmq/enabled_plugins") != "/etc/rabbitmq/enabled_plugins":
        problems.append("rabbitmq does not mount deploy/rabbitmq/enabled_plugins")
    if "rabbitmq_prometheus" not in open(os.path.join(DEPLOY, "rabbitmq", "enabled_plugins")).read():
        problems.append("deploy/rabbitmq/enabled_plugins does not enable rabbitmq_prometheus")
    check("Grafana provisioning and the RabbitMQ plugin file are mounted where they are read", problems)


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001 - a check that cannot run is a failed check
        check("static checks ran to the end", [f"{type(e).__name__}: {e}"])
        print(f"static: {results['PASS']} passed, {results['FAIL']} failed", flush=True)
        sys.exit(1)
