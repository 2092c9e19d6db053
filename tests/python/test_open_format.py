"""Lumen's segments are plain Parquet: DuckDB and pyarrow read them as they
are and count the same rows that Lumen's SQL counts."""

import base64
import glob
import json
import time
import urllib.request

import duckdb
import lumen_server
import pyarrow as pa
import pyarrow.parquet as pq

def post(url, payload):
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), headers={"content-type": "application/json"})
    with urllib.request.urlopen(req) as res:
        return json.load(res)


def test_duckdb_and_pyarrow_read_segments(tmp_path):
    data = str(tmp_path)
    proc, addrs = lumen_server.start(data)
    now = time.time_ns()
    hour = 3_600_000_000_000
    records = [{"timeUnixNano": str(now - (i % 3) * hour - i), "severityNumber": 9,
                "body": {"stringValue": f"line {i} user=u{i % 7}"},
                "attributes": [{"key": "i", "value": {"intValue": str(i)}}]} for i in range(500)]
    post(f"http://{addrs['otlp_http']}/v1/logs", {"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "parquet-check"}}]},
        "scopeLogs": [{"logRecords": records}]}]})
    spans = [{"traceId": f"{i + 1:032x}", "spanId": f"{i + 1:016x}", "name": "op", "kind": 2,
              "startTimeUnixNano": str(now - i), "endTimeUnixNano": str(now)} for i in range(200)]
    post(f"http://{addrs['otlp_http']}/v1/traces", {"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]})
    counts = {t: post(f"http://{addrs['http']}/api/v1/sql", {"query": f"SELECT count(*) AS n FROM {t}"})["rows"][0]["n"]
              for t in ("logs", "spans")}
    assert counts == {"logs": 500, "spans": 200}
    # A clean shutdown writes every buffer out as segments.
    proc.terminate()
    assert proc.wait(timeout=30) == 0

    for table, n in counts.items():
        files = glob.glob(f"{data}/segments/{table}/*/*.parquet")
        assert files, f"no {table} segments"
        assert duckdb.sql(f"SELECT count(*) FROM read_parquet('{data}/segments/{table}/*/*.parquet')").fetchone()[0] == n
        assert sum(pq.read_metadata(f).num_rows for f in files) == n
    # Three hour partitions for the logs, each readable with its columns and types.
    assert len(glob.glob(f"{data}/segments/logs/*/")) == 3
    row = duckdb.sql(f"SELECT body, service_name, log_attributes['i'] AS i, typeof(timestamp) AS t "
                     f"FROM read_parquet('{data}/segments/logs/*/*.parquet') WHERE body = 'line 42 user=u0'").fetchone()
    assert row[0] == "line 42 user=u0" and row[1] == "parquet-check" and row[2] == "42"
    assert row[3].startswith("TIMESTAMP")


def series_index(path):
    """The series index of a metrics segment's footer: zstd:<length>:<base64 of zstd JSON>."""
    value = pq.read_metadata(path).metadata[b"lumen.series_index"].decode()
    codec, length, b64 = value.split(":", 2)
    assert codec == "zstd"
    return json.loads(pa.decompress(base64.b64decode(b64), decompressed_size=int(length), codec="zstd").to_pybytes())


def test_metric_segments_sort_series_into_runs_listed_in_the_footer(tmp_path):
    data = str(tmp_path)
    proc, addrs = lumen_server.start(data)
    base = (time.time_ns() // 60_000_000_000) * 60_000_000_000 - 30 * 60_000_000_000
    # Three series interleaved in time, as exporters send them.
    points = [{"timeUnixNano": str(base + k * 15_000_000_000), "asDouble": float(k * 10 + s),
               "attributes": [{"key": "shard", "value": {"stringValue": f"s{s}"}}]}
              for k in range(20) for s in range(3)]
    post(f"http://{addrs['otlp_http']}/v1/metrics", {"resourceMetrics": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "runs"}}]},
        "scopeMetrics": [{"metrics": [
            {"name": "load", "gauge": {"dataPoints": points}},
            {"name": "hits", "sum": {"isMonotonic": True, "aggregationTemporality": 2, "dataPoints": [
                {"timeUnixNano": str(base), "asInt": "7"}]}}]}]}]})
    proc.terminate()
    assert proc.wait(timeout=30) == 0

    files = sorted(glob.glob(f"{data}/segments/metrics/*/*.parquet"))
    assert files
    for f in files:
        t = pq.read_table(f, columns=["series_id", "timestamp", "attributes"])
        ids = t.column("series_id").to_pylist()
        ts = t.column("timestamp").to_pylist()
        index = series_index(f)
        # Each series is one run of rows, in time order, as the footer says.
        covered = 0
        for run in index["runs"]:
            assert run["first"] == covered
            if run["name"] == "hits":
                # An integer point is stored once: `value` is null, `value_int` holds it.
                row = pq.read_table(f, columns=["value", "value_int"]).slice(run["first"], 1).to_pylist()[0]
                assert row == {"value": None, "value_int": 7}
                covered += run["rows"]
                continue
            rows = range(run["first"], run["first"] + run["rows"])
            assert {ids[r] for r in rows} == {run["id"]}
            assert [ts[r] for r in rows] == sorted(ts[r] for r in rows)
            assert run["name"] == "load" and run["kind"] == "gauge"
            assert index["resources"][run["resource"]] == [["service.name", "runs"]]
            covered += run["rows"]
        assert covered == t.num_rows
    assert sum(len(series_index(f)["runs"]) for f in files) >= 4

    # Read back from those segments through PromQL.
    proc, addrs = lumen_server.start(data)
    try:
        t_end = (base + 19 * 15_000_000_000) / 1e9
        with urllib.request.urlopen(f"http://{addrs['http']}/api/v1/query?query=sum(load)&time={t_end}") as r:
            res = json.load(r)
        assert res["data"]["result"][0]["value"][1] == str(190 * 3 + 3)
        # SQL fills `value` back from `value_int`.
        rows = post(f"http://{addrs['http']}/api/v1/sql",
                    {"query": "SELECT value, value_int FROM metrics WHERE metric_name = 'hits'"})["rows"]
        assert rows == [{"value": 7.0, "value_int": 7}]
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0
