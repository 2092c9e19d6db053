#!/usr/bin/env bash
# The whole test suite: unit, integration (real server, Rust SDK), the
# Python SDK round trip, and the dashboard in headless chromium. Installs
# what cargo does not (a Python virtualenv with the OpenTelemetry SDK and
# pytest, promtool, openssl, chromium, playwright-core) when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# One warm target directory outside the clone, shared by CI runs and sessions.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lumen-target}"
export CARGO_TERM_COLOR=never

VENV="${LUMEN_VENV:-$HOME/.cache/lumen-venv}"
PY_REQS="opentelemetry-sdk==1.45.* opentelemetry-exporter-otlp-proto-grpc==1.45.* opentelemetry-exporter-otlp-proto-http==1.45.* pytest==8.* duckdb==1.* pyarrow>=15 moto[server]==5.*"
if [ ! -x "$VENV/bin/pytest" ] || ! "$VENV/bin/python" -c "import opentelemetry.exporter.otlp.proto.grpc, opentelemetry.exporter.otlp.proto.http, duckdb, pyarrow, moto.server, boto3" 2>/dev/null; then
  echo "== setting up the Python virtualenv in $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip
  # Word-split the list, but never glob it (`moto[server]`).
  set -f
  # shellcheck disable=SC2086
  "$VENV/bin/pip" install --quiet $PY_REQS
  set +f
fi

# Debian packages: promtool (the Prometheus client check), openssl (the TLS
# tests' certificates), chromium (the dashboard tests, with playwright-core).
apt_install() { # package, the file it provides
  [ -x "$2" ] && return
  echo "== installing $1 (Debian's package)"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$1" >/dev/null \
    || { $SUDO apt-get update >/dev/null && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$1" >/dev/null; }
}
apt_install prometheus /usr/bin/promtool
apt_install openssl /usr/bin/openssl
apt_install chromium /usr/bin/chromium
if [ ! -d tests/ui/node_modules/playwright-core ]; then
  echo "== installing playwright-core (npm)"
  (cd tests/ui && npm ci --no-audit --no-fund --silent)
fi

echo "== cargo test (unit + integration)"
cargo test --workspace --all-targets

echo "== Python SDK round trip"
LUMEN_BIN="$CARGO_TARGET_DIR/debug/lumen" "$VENV/bin/pytest" -q tests/python

echo "== dashboard in headless chromium (screenshots in test-artifacts/screenshots)"
(cd tests/ui && LUMEN_BIN="$CARGO_TARGET_DIR/debug/lumen" node --test --test-concurrency=1)
