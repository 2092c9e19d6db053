"""The Python SDK's exporters send their token as OTLP headers (as
OTEL_EXPORTER_OTLP_HEADERS would), over gRPC and HTTP, to a Lumen with
tokens of two tenants; each tenant reads back only its own spans, and an
exporter without a token is refused."""

import os
import urllib.error

import lumen_server
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult

RED = "red-team-token-0123456789abcdef"
BLUE = "blue-team-token-0123456789abcdef"


@pytest.fixture(scope="module")
def lumen(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("lumen-py-auth-"))
    conf = os.path.join(d, "lumen.toml")
    with open(conf, "w") as f:
        f.write(f'[[auth.tokens]]\nname = "red"\ntoken = "{RED}"\nscopes = ["ingest", "read"]\ntenant = "red"\n\n'
                f'[[auth.tokens]]\nname = "blue"\ntoken = "{BLUE}"\nscopes = ["ingest", "read"]\ntenant = "blue"\n')
    proc, addrs = lumen_server.start(os.path.join(d, "data"), ["--config", conf])
    yield addrs
    proc.terminate()
    assert proc.wait(timeout=30) == 0






def test_tokens_in_otlp_headers_pick_the_tenant(lumen):
    for kind, make in [("grpc", lambda h: GrpcSpanExporter(endpoint=f"http://{lumen['otlp_grpc']}", insecure=True, headers=h)),
                       ("http", lambda h: HttpSpanExporter(endpoint=f"http://{lumen['otlp_http']}/v1/traces", headers=h))]:
        lumen_server.export_span(make({"authorization": f"Bearer {RED}"}), "red-svc", f"red-{kind}")
        lumen_server.export_span(make({"authorization": f"Bearer {BLUE}"}), "blue-svc", f"blue-{kind}")
    def names(token):
        return lumen_server.sql(lumen, "SELECT name FROM spans ORDER BY name",
                                headers={"authorization": f"Bearer {token}"})
    assert names(RED) == [{"name": "red-grpc"}, {"name": "red-http"}]
    assert names(BLUE) == [{"name": "blue-grpc"}, {"name": "blue-http"}]


def test_an_exporter_without_a_token_is_refused(lumen):
    exporter = HttpSpanExporter(endpoint=f"http://{lumen['otlp_http']}/v1/traces")
    provider = TracerProvider(resource=Resource.create({"service.name": "anon"}))
    results = []

    class Recording(SimpleSpanProcessor):
        def on_end(self, span):
            results.append(exporter.export([span]))

    provider.add_span_processor(Recording(exporter))
    with provider.get_tracer("py-auth").start_as_current_span("anonymous"):
        pass
    assert results == [SpanExportResult.FAILURE]
    with pytest.raises(urllib.error.HTTPError) as e:
        lumen_server.sql(lumen, "SELECT 1", headers={"authorization": "Bearer not-a-token-0123456789"})
    assert e.value.code == 401
