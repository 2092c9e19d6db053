"""Starts the real `lumen serve` binary on ephemeral ports for the Python tests."""

import os
import subprocess

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
