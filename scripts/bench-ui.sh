#!/usr/bin/env bash
# The dashboard's first view (issue 6): bytes transferred and time to the
# first log row in headless chromium, as recorded in BENCHMARKS.md. Not part
# of CI. BIN defaults to the release binary.
#   ./scripts/bench-ui.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lumen-target}"
[ -n "${SKIP_BUILD:-}" ] || cargo build --release --bin lumen
[ -d tests/ui/node_modules/playwright-core ] || (cd tests/ui && npm ci --no-audit --no-fund --silent)
cd tests/ui && LUMEN_BIN="${BIN:-$CARGO_TARGET_DIR/release/lumen}" RUNS="${RUNS:-15}" node bench.mjs
