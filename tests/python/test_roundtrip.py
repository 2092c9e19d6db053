"""The Python OpenTelemetry SDK exports logs, spans and metrics to a real
`lumen serve` over gRPC and HTTP/protobuf; the records are read back via SQL."""


import lumen_server
from lumen_server import sql
import pytest
from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

@pytest.fixture(scope="module")
def lumen(tmp_path_factory):
    proc, addrs = lumen_server.start(str(tmp_path_factory.mktemp("lumen-py-")))
    yield addrs
    proc.terminate()
    assert proc.wait(timeout=30) == 0




def exporters(kind, addrs):
    if kind == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        ep = f"http://{addrs['otlp_grpc']}"
        return (OTLPLogExporter(endpoint=ep, insecure=True), OTLPSpanExporter(endpoint=ep, insecure=True),
                OTLPMetricExporter(endpoint=ep, insecure=True))
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    base = f"http://{addrs['otlp_http']}"
    return (OTLPLogExporter(endpoint=f"{base}/v1/logs"), OTLPSpanExporter(endpoint=f"{base}/v1/traces"),
            OTLPMetricExporter(endpoint=f"{base}/v1/metrics"))


@pytest.mark.parametrize("kind", ["grpc", "http"])
def test_python_sdk_roundtrip(lumen, kind):
    service = f"py-{kind}"
    resource = Resource.create({"service.name": service, "team": "core", "replicas": 3})
    log_exp, span_exp, metric_exp = exporters(kind, lumen)

    tracers = TracerProvider(resource=resource)
    tracers.add_span_processor(SimpleSpanProcessor(span_exp))
    tracer = tracers.get_tracer("py-tracer")
    with tracer.start_as_current_span("handle request", kind=SpanKind.SERVER) as parent:
        with tracer.start_as_current_span("db query", kind=SpanKind.CLIENT,
                                          attributes={"db.rows": 12, "db.ok": False}) as child:
            child.add_event("slow", {"ms": 250})
            child.set_status(Status(StatusCode.ERROR, "timeout"))
        trace_id = format(parent.get_span_context().trace_id, "032x")
        parent_id = format(parent.get_span_context().span_id, "016x")

    loggers = LoggerProvider(resource=resource)
    loggers.add_log_record_processor(SimpleLogRecordProcessor(log_exp))
    logger = loggers.get_logger("py-logger")
    logger.emit(body=f"hello from python over {kind}", severity_number=SeverityNumber.WARN,
                severity_text="WARN", attributes={"user": "ada", "n": 7, "tags": ["x", "y"]})

    meters = MeterProvider(resource=resource, metric_readers=[PeriodicExportingMetricReader(metric_exp)])
    meter = meters.get_meter("py-meter")
    meter.create_counter("py.requests").add(5, {"route": "/a"})
    meter.create_histogram("py.latency", unit="ms").record(12.0)

    tracers.shutdown()
    loggers.shutdown()
    meters.shutdown()

    logs = sql(lumen, f"SELECT * FROM logs WHERE service_name = '{service}'")
    assert len(logs) == 1
    log = logs[0]
    assert log["body"] == f"hello from python over {kind}"
    assert log["severity_number"] == 13 and log["severity_text"] == "WARN"
    assert log["log_attributes"] == {"user": "ada", "n": "7", "tags": '["x","y"]'}
    assert log["resource_attributes"]["replicas"] == "3"
    assert log["scope_name"] == "py-logger"

    spans = sql(lumen, f"SELECT * FROM spans WHERE service_name = '{service}' ORDER BY start_time")
    assert [s["name"] for s in spans] == ["handle request", "db query"]
    assert spans[0]["trace_id"] == trace_id and spans[0]["span_id"] == parent_id
    assert spans[1]["parent_span_id"] == parent_id
    assert spans[1]["kind"] == "SPAN_KIND_CLIENT"
    assert spans[1]["status_code"] == "STATUS_CODE_ERROR" and spans[1]["status_message"] == "timeout"
    assert spans[1]["span_attributes"] == {"db.rows": "12", "db.ok": "false"}
    assert spans[1]["events"][0]["name"] == "slow"
    assert spans[1]["events"][0]["attributes"] == {"ms": "250"}

    metrics = sql(lumen, f"SELECT metric_name, metric_type, value, is_monotonic, count, sum, unit "
                         f"FROM metrics WHERE service_name = '{service}' ORDER BY metric_name")
    assert [m["metric_name"] for m in metrics] == ["py.latency", "py.requests"]
    assert metrics[0]["metric_type"] == "histogram" and metrics[0]["count"] == 1 and metrics[0]["sum"] == 12.0
    assert metrics[0]["unit"] == "ms"
    assert metrics[1]["metric_type"] == "sum" and metrics[1]["value"] == 5.0 and metrics[1]["is_monotonic"] is True
