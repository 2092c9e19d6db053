"""PromQL over metrics from the Python OpenTelemetry SDK with delta
temporality (counters and histograms summed into running totals) and a
cumulative up-down counter, queried over /api/v1/query and with promtool
(Debian's `prometheus` package), which must read Lumen's answers as it
reads Prometheus's."""

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request

import lumen_server
import pytest
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import (
    ExplicitBucketHistogramAggregation,
    ExponentialBucketHistogramAggregation,
    View,
)
from opentelemetry.sdk.resources import Resource


@pytest.fixture(scope="module")
def lumen(tmp_path_factory):
    proc, addrs = lumen_server.start(str(tmp_path_factory.mktemp("lumen-py-promql-")))
    yield addrs
    proc.terminate()
    assert proc.wait(timeout=30) == 0


def query(addrs, q, t):
    url = f"http://{addrs['http']}/api/v1/query?{urllib.parse.urlencode({'query': q, 'time': t})}"
    with urllib.request.urlopen(url) as res:
        body = json.load(res)
    assert body["status"] == "success", body
    return body["data"]


def send(addrs, service):
    exporter = OTLPMetricExporter(
        endpoint=f"http://{addrs['otlp_http']}/v1/metrics",
        preferred_temporality={Counter: AggregationTemporality.DELTA,
                               Histogram: AggregationTemporality.DELTA})
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(
        resource=Resource.create({"service.name": service, "service.instance.id": "py-1"}),
        metric_readers=[reader],
        views=[View(instrument_name="checkout.duration",
                    aggregation=ExplicitBucketHistogramAggregation([0.1, 1.0])),
               View(instrument_name="payload.size",
                    aggregation=ExponentialBucketHistogramAggregation())])
    meter = provider.get_meter("py-promql")
    orders = meter.create_counter("orders")
    duration = meter.create_histogram("checkout.duration", unit="s")
    depth = meter.create_up_down_counter("queue.depth")
    payload = meter.create_histogram("payload.size", unit="By")
    # Three exports: each carries only what happened since the last one
    # (the exponential histogram's deltas each at their own scale).
    for adds, observations, sizes in [(2, [0.05], [3]), (3, [0.05, 0.05], [3, 5]), (5, [0.5], [100])]:
        orders.add(adds, {"region": "eu"})
        for o in observations:
            duration.record(o)
        for b in sizes:
            payload.record(b)
        depth.add(adds)
        provider.force_flush()
        time.sleep(0.05)
    depth.add(-4)
    provider.force_flush()
    provider.shutdown()


def test_delta_and_cumulative_metrics_from_the_python_sdk(lumen):
    send(lumen, "py-shop")
    now = time.time() + 1
    d = query(lumen, 'orders_total{job="py-shop"}', now)
    assert d["resultType"] == "vector"
    [s] = d["result"]
    assert s["metric"] == {"__name__": "orders_total", "job": "py-shop", "instance": "py-1", "region": "eu"}
    # Deltas 2, 3, 5 sum to 10.
    assert s["value"][1] == "10"
    # A cumulative up-down counter stays a gauge: 2 + 3 + 5 - 4.
    [s] = query(lumen, 'queue_depth{job="py-shop"}', now)["result"]
    assert s["value"][1] == "6"
    # Histogram deltas summed: 3 observations of 0.05, one of 0.5.
    [s] = query(lumen, 'checkout_duration_seconds_count{job="py-shop"}', now)["result"]
    assert s["value"][1] == "4"
    [s] = query(lumen, 'histogram_quantile(0.5, checkout_duration_seconds_bucket{job="py-shop"})', now)["result"]
    assert abs(float(s["value"][1]) - 0.1 * 2 / 3) < 1e-9
    # The exponential histogram is a native histogram: the deltas (3; 3, 5;
    # 100) summed at the lowest of their scales.
    [s] = query(lumen, 'payload_size_bytes{job="py-shop"}', now)["result"]
    assert s["histogram"][1]["count"] == "4" and s["histogram"][1]["sum"] == "111", s
    [s] = query(lumen, 'histogram_fraction(0, 10, payload_size_bytes{job="py-shop"})', now)["result"]
    assert s["value"][1] == "0.75", s
    [s] = query(lumen, 'histogram_quantile(0.5, payload_size_bytes{job="py-shop"})', now)["result"]
    assert 3 <= float(s["value"][1]) <= 5, s


def promtool():
    path = shutil.which("promtool")
    assert path, "promtool is missing: scripts/test.sh installs Debian's prometheus package"
    return path


def test_promtool_reads_lumen_as_a_prometheus_server(lumen):
    send(lumen, "py-tool")
    send(lumen, "py-tool")
    server = f"http://{lumen['http']}"
    now = int(time.time()) + 1
    out = subprocess.run(
        [promtool(), "query", "instant", "-o", "json", f"--time={now}", server, 'sum by (region) (orders_total{job="py-tool"})'],
        check=True, capture_output=True, text=True, timeout=60).stdout
    result = json.loads(out)
    assert [(r["metric"], r["value"][1]) for r in result] == [({"region": "eu"}, "20")]
    # The text format promtool prints for people.
    out = subprocess.run(
        [promtool(), "query", "instant", f"--time={now}", server, 'count(orders_total{job="py-tool"})'],
        check=True, capture_output=True, text=True, timeout=60).stdout
    assert out.strip() == f"{{}} => 1 @[{now}]", out
    out = subprocess.run(
        [promtool(), "query", "range", "-o", "json", f"--start={now - 60}", f"--end={now}", "--step=30s",
         server, 'sum(queue_depth{job="py-tool"})'],
        check=True, capture_output=True, text=True, timeout=60).stdout
    [series] = json.loads(out)
    assert series["metric"] == {}
    # Two SDK instances wrote the same series; the newest value is 6.
    assert [v[1] for v in series["values"]][-1] == "6"
    # Labels and series, as promtool lists them.
    out = subprocess.run([promtool(), "query", "labels", server, "job"],
                         check=True, capture_output=True, text=True, timeout=60).stdout
    assert "py-tool" in out.split()
    # A malformed query is an error promtool reports, not a crash of Lumen.
    bad = subprocess.run([promtool(), "query", "instant", server, "sum("],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0
    assert "bad_data" in bad.stderr or "parse" in bad.stderr.lower(), bad.stderr
    assert query(lumen, "1", now)["result"][1] == "1"
