"""Log search and the Jaeger API over data exported by the Python
OpenTelemetry SDK: search answers equal SQL brute force, and a trace that
crosses two services comes back from /api/traces/{id} in Jaeger's shape."""

import json
import urllib.parse
import urllib.request

import lumen_server
from lumen_server import sql
import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context


@pytest.fixture(scope="module")
def lumen(tmp_path_factory):
    proc, addrs = lumen_server.start(str(tmp_path_factory.mktemp("lumen-py-q-")),
                                     ["--flush-interval", "1s", "--index-delay", "1s"])
    yield addrs
    proc.terminate()
    assert proc.wait(timeout=30) == 0


def get(addrs, path, **params):
    url = f"http://{addrs['http']}{path}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url) as res:
            return res.status, json.load(res)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)




WORDS = ["timeout", "refused", "login", "cache", "payment"]
LEVELS = [(SeverityNumber.INFO, "INFO"), (SeverityNumber.WARN, "WARN"), (SeverityNumber.ERROR, "ERROR")]


def test_log_search_equals_sql_over_python_sdk_data(lumen):
    base = f"http://{lumen['otlp_http']}"
    for service in ["py-api", "py-worker"]:
        provider = LoggerProvider(resource=Resource.create({"service.name": service}))
        provider.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(endpoint=f"{base}/v1/logs")))
        logger = provider.get_logger("py-search")
        for i in range(60):
            sev, text = LEVELS[i % 3]
            logger.emit(body=f"{WORDS[i % 5]} event {i} from {service}", severity_number=sev,
                        severity_text=text, attributes={"shard": str(i % 4)})
        provider.shutdown()
    assert sql(lumen, "SELECT count(*) AS n FROM logs")[0]["n"] == 120

    cases = [
        ("timeout", "body LIKE '%timeout%'"),
        ("timeout OR refused", "(body LIKE '%timeout%' OR body LIKE '%refused%')"),
        ("service:py-worker severity>=warn", "service_name = 'py-worker' AND severity_number >= 13"),
        ("attr.shard:2 -cache", "log_attributes['shard'] = '2' AND body NOT LIKE '%cache%'"),
        ('"event 7 from"', "body LIKE '%event 7 from%'"),
    ]
    for q, where in cases:
        want = [r["body"] for r in sql(lumen, f"SELECT body FROM logs WHERE {where} ORDER BY timestamp DESC")]
        got, cursor = [], None
        while True:
            params = {"q": q, "limit": 7, **({"cursor": cursor} if cursor else {})}
            status, page = get(lumen, "/api/v1/logs/search", **params)
            assert status == 200, page
            got += [r["body"] for r in page["logs"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert got == want, q
        assert want, q

    status, err = get(lumen, "/api/v1/logs/search", q="(timeout")
    assert status == 400 and err["position"] == 0


def test_jaeger_trace_from_two_python_services(lumen):
    base = f"http://{lumen['otlp_http']}"

    def provider(service):
        p = TracerProvider(resource=Resource.create({"service.name": service, "host.name": f"{service}-1"}))
        p.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{base}/v1/traces")))
        return p

    front, back = provider("py-front"), provider("py-back")
    with front.get_tracer("py-jaeger").start_as_current_span("GET /order", kind=SpanKind.SERVER) as root:
        root.set_attribute("http.response.status_code", 503)
        ctx = set_span_in_context(root)
        with back.get_tracer("py-jaeger").start_as_current_span("reserve stock", context=ctx,
                                                              kind=SpanKind.CONSUMER) as child:
            child.add_event("retry", {"attempt": 2})
            child.set_status(Status(StatusCode.ERROR, "out of stock"))
        trace_id = format(root.get_span_context().trace_id, "032x")
        root_id = format(root.get_span_context().span_id, "016x")
        child_id = format(child.get_span_context().span_id, "016x")
    front.shutdown()
    back.shutdown()

    status, v = get(lumen, f"/api/traces/{trace_id}")
    assert status == 200, v
    assert v["errors"] is None and v["total"] == 0
    trace = v["data"][0]
    assert trace["traceID"] == trace_id
    spans = {s["spanID"]: s for s in trace["spans"]}
    assert set(spans) == {root_id, child_id}
    root_span, child_span = spans[root_id], spans[child_id]
    assert root_span["operationName"] == "GET /order"
    assert root_span["references"] == []
    assert child_span["references"] == [{"refType": "CHILD_OF", "traceID": trace_id, "spanID": root_id}]
    assert {"key": "http.response.status_code", "type": "int64", "value": 503} in root_span["tags"]
    assert {"key": "span.kind", "type": "string", "value": "consumer"} in child_span["tags"]
    assert {"key": "error", "type": "bool", "value": True} in child_span["tags"]
    assert {"key": "otel.status_description", "type": "string", "value": "out of stock"} in child_span["tags"]
    assert child_span["logs"][0]["fields"][0] == {"key": "event", "type": "string", "value": "retry"}
    assert {"key": "attempt", "type": "int64", "value": 2} in child_span["logs"][0]["fields"]
    procs = trace["processes"]
    assert procs[root_span["processID"]]["serviceName"] == "py-front"
    assert procs[child_span["processID"]]["serviceName"] == "py-back"
    assert {"key": "host.name", "type": "string", "value": "py-back-1"} in procs[child_span["processID"]]["tags"]

    status, v = get(lumen, "/api/traces", service="py-back", tags=json.dumps({"error": "true"}), start=0)
    assert status == 200 and [t["traceID"] for t in v["data"]] == [trace_id]
    status, v = get(lumen, "/api/dependencies")
    assert {"parent": "py-front", "child": "py-back", "callCount": 1} in v["data"]
