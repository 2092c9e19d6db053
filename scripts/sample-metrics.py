#!/usr/bin/env python3
"""Samples a running Lumen's /metrics at a short interval, for diagnosing
what the budget gauge is doing under load (not part of CI).

    scripts/sample-metrics.py http://127.0.0.1:27070 0.1 60 > samples.tsv

Columns: seconds since start, budget use and buffered bytes (MiB), flushes
and their seconds since the previous sample, WAL fsyncs and their seconds,
whether a merge is running, and refusals since the previous sample.
"""
import sys
import time
import urllib.request


def scrape(url):
    values = {}
    with urllib.request.urlopen(url + "/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if not line or line.startswith("#"):
                continue
            name, _, value = line.rpartition(" ")
            base = name.split("{", 1)[0]
            try:
                values[base] = values.get(base, 0.0) + float(value)
            except ValueError:
                pass
    return values


def main():
    url = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:7070"
    interval = float(sys.argv[2]) if len(sys.argv) > 2 else 0.1
    duration = float(sys.argv[3]) if len(sys.argv) > 3 else 60.0
    mib = 1 << 20
    cumulative = [
        "lumen_flush_seconds_count",
        "lumen_flush_seconds_sum",
        "lumen_wal_fsync_seconds_count",
        "lumen_wal_fsync_seconds_sum",
        "lumen_requests_refused_total",
    ]
    print("t\tbudget_mib\tbuffer_mib\tflushes\tflush_s\tfsyncs\tfsync_s\tmerging\trefused")
    start = time.monotonic()
    prev = None
    while time.monotonic() - start < duration:
        t = time.monotonic() - start
        try:
            m = scrape(url)
        except OSError:
            break
        if prev is not None:
            d = {k: m.get(k, 0.0) - prev.get(k, 0.0) for k in cumulative}
            print(
                f"{t:.2f}\t{m.get('lumen_memory_budget_used_bytes', 0) / mib:.0f}"
                f"\t{m.get('lumen_buffer_bytes', 0) / mib:.0f}"
                f"\t{d['lumen_flush_seconds_count']:.0f}\t{d['lumen_flush_seconds_sum']:.3f}"
                f"\t{d['lumen_wal_fsync_seconds_count']:.0f}\t{d['lumen_wal_fsync_seconds_sum']:.3f}"
                f"\t{m.get('lumen_compaction_running', 0):.0f}"
                f"\t{d['lumen_requests_refused_total']:.0f}",
                flush=True,
            )
        prev = m
        time.sleep(max(0.0, interval - (time.monotonic() - start - t)))


if __name__ == "__main__":
    main()
