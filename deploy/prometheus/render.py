#!/usr/bin/python3
"""Renders a Prometheus configuration from the one template, deploy/prometheus/prometheus.yml.

Only addresses change: each job's targets (jobs given no target are left out, and say so), the
Alertmanager address, and the rule files' directory (made absolute, so the rendered file can
live anywhere). The test may also shorten the intervals. Everything else (job names, metrics
paths, labels, the rule files themselves) is the template's.

  render.py --out FILE --target vote=127.0.0.1:8080 --target postgres=127.0.0.1:9187 \
            [--alertmanager 127.0.0.1:9093] [--interval 1s] [--data-note TEXT]

`render.py --check RENDERED` exits non-zero when RENDERED differs from the template in anything
but those fields (tests/ops/run runs it on every rendered configuration).
"""
import argparse
import copy
import os
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
TEMPLATE = os.path.join(HERE, "prometheus.yml")


def load(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def render(template, targets, alertmanager, interval):
    cfg = copy.deepcopy(template)
    cfg["rule_files"] = [os.path.join(HERE, r) for r in template["rule_files"]]
    if interval:
        cfg["global"]["scrape_interval"] = interval
        cfg["global"]["evaluation_interval"] = interval
        cfg["global"]["scrape_timeout"] = interval
    if alertmanager:
        cfg["alerting"]["alertmanagers"][0]["static_configs"] = [{"targets": [alertmanager]}]
    else:
        del cfg["alerting"]
    jobs = []
    for job in cfg["scrape_configs"]:
        name = job["job_name"]
        if name not in targets:
            print(f"render: job {name} has no target here; left out", file=sys.stderr)
            continue
        job["static_configs"] = [{"targets": targets[name]}]
        jobs.append(job)
    unknown = set(targets) - {j["job_name"] for j in template["scrape_configs"]}
    if unknown:
        sys.exit(f"render: no such job in {TEMPLATE}: {', '.join(sorted(unknown))}")
    cfg["scrape_configs"] = jobs
    return cfg


def normalise(cfg):
    """The configuration with every field render() may change blanked out."""
    cfg = copy.deepcopy(cfg)
    cfg.pop("alerting", None)
    cfg["rule_files"] = [os.path.basename(os.path.dirname(r)) + "/" + os.path.basename(r) if os.path.isabs(r) else r
                         for r in cfg.get("rule_files", [])]
    for key in ("scrape_interval", "evaluation_interval", "scrape_timeout"):
        cfg["global"].pop(key, None)
    for job in cfg["scrape_configs"]:
        job.pop("static_configs", None)
    return cfg


def check(rendered_path):
    template = normalise(load(TEMPLATE))
    rendered = normalise(load(rendered_path))
    errors = []
    by_name = {j["job_name"]: j for j in template["scrape_configs"]}
    for job in rendered["scrape_configs"]:
        if by_name.get(job["job_name"]) != job:
            errors.append(f"job {job['job_name']} differs from the template's")
    rendered.pop("scrape_configs")
    template.pop("scrape_configs")
    if rendered != template:
        errors.append(f"top-level settings differ: {rendered} != {template}")
    rules = load(rendered_path).get("rule_files", [])
    for r in rules:
        if os.path.isabs(r) and os.path.dirname(r) != os.path.join(HERE, "rules"):
            errors.append(f"rule file {r} is not the template's rules directory")
    for e in errors:
        print(f"render --check {rendered_path}: {e}", file=sys.stderr)
    return not errors


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out")
    p.add_argument("--target", action="append", default=[], metavar="JOB=HOST:PORT[,HOST:PORT]")
    p.add_argument("--alertmanager")
    p.add_argument("--interval")
    p.add_argument("--check", metavar="RENDERED")
    a = p.parse_args()
    if a.check:
        sys.exit(0 if check(a.check) else 1)
    if not a.out:
        p.error("--out is required")
    targets = {}
    for t in a.target:
        job, _, addrs = t.partition("=")
        targets.setdefault(job, []).extend(x for x in addrs.split(",") if x)
    cfg = render(load(TEMPLATE), targets, a.alertmanager, a.interval)
    with open(a.out, "w", encoding="utf-8") as f:
        f.write(f"# Rendered by deploy/prometheus/render.py from {TEMPLATE}; do not edit.\n")
        yaml.safe_dump(cfg, f, sort_keys=False)


if __name__ == "__main__":
    main()
