"""The Python SDK's exporters over TLS (gRPC with the CA as root
certificates, HTTP with `certificate_file`, as OTEL_EXPORTER_OTLP_CERTIFICATE
sets it) to a Lumen started with --tls-cert/--tls-key and --tenant-header,
each naming its tenant in X-Scope-OrgID; the spans are read back over HTTPS,
per tenant."""

import json
import os
import ssl
import subprocess
import urllib.request

import grpc
import lumen_server
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor


@pytest.fixture(scope="module")
def lumen(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("lumen-py-tls-"))
    here = os.path.dirname(os.path.abspath(__file__))
    subprocess.run([os.path.join(here, "..", "make-test-cert.sh"), d], check=True, capture_output=True)
    proc, addrs = lumen_server.start(os.path.join(d, "data"),
                                     ["--tls-cert", os.path.join(d, "cert.pem"),
                                      "--tls-key", os.path.join(d, "key.pem"), "--tenant-header"])
    addrs["cert"] = os.path.join(d, "ca.pem")
    yield addrs
    proc.terminate()
    assert proc.wait(timeout=30) == 0


def sql(addrs, org, query):
    req = urllib.request.Request(
        f"https://{addrs['http']}/api/v1/sql", data=json.dumps({"query": query}).encode(),
        headers={"content-type": "application/json", "x-scope-orgid": org})
    ctx = ssl.create_default_context(cafile=addrs["cert"])
    with urllib.request.urlopen(req, context=ctx) as res:
        return json.load(res)["rows"]


def export(exporter, service, name):
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("py-tls").start_as_current_span(name):
        pass
    provider.shutdown()


def test_exporters_over_tls_name_their_tenant(lumen, monkeypatch):
    # requests lets REQUESTS_CA_BUNDLE (set on some machines) override the
    # session's `verify`, which is where the exporter puts certificate_file.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    with open(lumen["cert"], "rb") as f:
        creds = grpc.ssl_channel_credentials(root_certificates=f.read())
    for org in ["red", "blue"]:
        export(GrpcSpanExporter(endpoint=f"https://{lumen['otlp_grpc']}", credentials=creds,
                                headers={"x-scope-orgid": org}), f"{org}-svc", f"{org}-grpc")
        export(HttpSpanExporter(endpoint=f"https://{lumen['otlp_http']}/v1/traces", certificate_file=lumen["cert"],
                                headers={"X-Scope-OrgID": org}), f"{org}-svc", f"{org}-http")
    assert sql(lumen, "red", "SELECT name FROM spans ORDER BY name") == [{"name": "red-grpc"}, {"name": "red-http"}]
    assert sql(lumen, "blue", "SELECT name FROM spans ORDER BY name") == [{"name": "blue-grpc"}, {"name": "blue-http"}]
    # No header: the default tenant, which holds neither.
    assert sql(lumen, "", "SELECT count(*) AS n FROM spans") == [{"n": 0}]


def test_plain_text_is_refused_on_a_tls_listener(lumen):
    with pytest.raises(Exception):
        urllib.request.urlopen(f"http://{lumen['http']}/health", timeout=10)
