"""Starts the real `lumen serve` binary on ephemeral ports for the Python tests."""

import json
import os
import ssl
import subprocess
import urllib.request

LUMEN_BIN = os.environ.get("LUMEN_BIN", "target/debug/lumen")


def start(data_dir, extra_args=(), env=None):
    """Returns (process, addresses) once Lumen printed its ready line."""
    proc = subprocess.Popen(
        [LUMEN_BIN, "serve", "--data-dir", data_dir, "--otlp-grpc-addr", "127.0.0.1:0",
         "--otlp-http-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", *extra_args],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "LUMEN_LOG": "warn", **(env or {})})
    line = ""
    for line in proc.stdout:
        if line.startswith("lumen ready"):
            break
    assert line.startswith("lumen ready"), "lumen did not start"
    return proc, dict(p.split("=", 1) for p in line.split()[2:])


def sql(addrs, query, headers=None, ca_file=None):
    """Runs SQL over the HTTP API (HTTPS when `ca_file` is given); the rows."""
    scheme = "https" if ca_file else "http"
    req = urllib.request.Request(
        f"{scheme}://{addrs['http']}/api/v1/sql", data=json.dumps({"query": query}).encode(),
        headers={"content-type": "application/json", **(headers or {})})
    ctx = ssl.create_default_context(cafile=ca_file) if ca_file else None
    with urllib.request.urlopen(req, context=ctx) as res:
        return json.load(res)["rows"]


def export_span(exporter, service, name):
    """Sends one span named `name` of `service` through `exporter`."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("lumen-tests").start_as_current_span(name):
        pass
    provider.shutdown()
