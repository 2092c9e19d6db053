"""The Python SDK's exporters over TLS (gRPC with the CA as root
certificates, HTTP with `certificate_file`, as OTEL_EXPORTER_OTLP_CERTIFICATE
sets it) to a Lumen started with --tls-cert/--tls-key and --tenant-header,
each naming its tenant in X-Scope-OrgID; the spans are read back over HTTPS,
per tenant."""

import os
import subprocess
import urllib.request

import grpc
import lumen_server
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter


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






def test_exporters_over_tls_name_their_tenant(lumen, monkeypatch):
    # requests lets REQUESTS_CA_BUNDLE (set on some machines) override the
    # session's `verify`, which is where the exporter puts certificate_file.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    with open(lumen["cert"], "rb") as f:
        creds = grpc.ssl_channel_credentials(root_certificates=f.read())
    for org in ["red", "blue"]:
        grpc_exporter = GrpcSpanExporter(endpoint=f"https://{lumen['otlp_grpc']}", credentials=creds,
                                         headers={"x-scope-orgid": org})
        http_exporter = HttpSpanExporter(endpoint=f"https://{lumen['otlp_http']}/v1/traces",
                                         certificate_file=lumen["cert"], headers={"X-Scope-OrgID": org})
        lumen_server.export_span(grpc_exporter, f"{org}-svc", f"{org}-grpc")
        lumen_server.export_span(http_exporter, f"{org}-svc", f"{org}-http")

    def names(org):
        return lumen_server.sql(lumen, "SELECT name FROM spans ORDER BY name", ca_file=lumen["cert"],
                                headers={"x-scope-orgid": org})
    assert names("red") == [{"name": "red-grpc"}, {"name": "red-http"}]
    assert names("blue") == [{"name": "blue-grpc"}, {"name": "blue-http"}]
    # No header: the default tenant, which holds neither.
    assert names("") == []


def test_plain_text_is_refused_on_a_tls_listener(lumen):
    with pytest.raises(Exception):
        urllib.request.urlopen(f"http://{lumen['http']}/health", timeout=10)
