"""Latency percentiles from pgbench per-transaction logs (`pgbench -l --log-prefix=P`).

    python3 loadtest/pglog.py P   ->   {"transactions": n, "failed": f, "p50_us": ..., ...}

Each line is `client_id transaction_no time script_no time_epoch time_us [schedule_lag]`, with
`time` the latency in microseconds, or `failed`/`skipped` instead of a number.
"""
import glob
import json
import sys


def percentile(sorted_values, p):
    if not sorted_values:
        return None
    # nearest rank, as wrk reports it
    rank = max(1, -(-len(sorted_values) * p // 100))
    return sorted_values[int(rank) - 1]


def main() -> None:
    prefix = sys.argv[1]
    latencies = []
    failed = 0
    for path in glob.glob(prefix + ".[0-9]*"):
        with open(path) as f:
            for line in f:
                fields = line.split()
                if len(fields) < 3:
                    continue
                if fields[2].isdigit():
                    latencies.append(int(fields[2]))
                else:
                    failed += 1
    latencies.sort()
    result = {"transactions": len(latencies), "failed": failed}
    for p in (50, 90, 99):
        result[f"p{p}_us"] = percentile(latencies, p)
    result["max_us"] = latencies[-1] if latencies else None
    print(json.dumps(result))


if __name__ == "__main__":
    main()
