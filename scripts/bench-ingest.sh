#!/usr/bin/env bash
# Durable-ingest benchmarks of issue 2, as recorded in BENCHMARKS.md.
# Builds the release binary, starts `lumen serve` on a fresh data directory for
# each scenario and drives it with `lumen loadgen`. Not part of CI.
#   DURATION=60 CONNECTIONS=4 ./scripts/bench-ingest.sh
# SKIP_BUILD=1 BIN=/path/to/lumen runs a given build instead.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lumen-target-release}"
[ -n "${SKIP_BUILD:-}" ] || cargo build --release --bin lumen
BIN="${BIN:-$CARGO_TARGET_DIR/release/lumen}"
DURATION="${DURATION:-60}"
CONNECTIONS="${CONNECTIONS:-4}"
DATA="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$DATA"' EXIT

start() {
  rm -rf "$DATA/d"
  "$BIN" serve --data-dir "$DATA/d" --otlp-grpc-addr 127.0.0.1:24317 --otlp-http-addr 127.0.0.1:24318 \
    --http-addr 127.0.0.1:27070 "$@" > "$DATA/serve.log" 2>&1 &
  SERVER=$!
  until curl -sf 127.0.0.1:27070/health > /dev/null; do sleep 0.2; done
}
stop() { kill -TERM "$SERVER"; wait "$SERVER" || true; }
load() { "$BIN" loadgen --duration "$DURATION" --connections "$CONNECTIONS" --watch-pid "$SERVER" "$@" | grep '^result'; }

echo "== decode-only baseline (2 threads)"
"$BIN" loadgen --decode-only --signal logs --duration 10 --connections 2 | grep '^result'
"$BIN" loadgen --decode-only --signal spans --duration 10 --connections 2 | grep '^result'

for signal in logs spans; do
  for proto in grpc http; do
    port=24317; [ "$proto" = http ] && port=24318
    echo "== max durable ingest: $signal over $proto"
    start; load --signal "$signal" --protocol "$proto" --endpoint "127.0.0.1:$port"; stop
  done
done

if [ -n "${HALF_RATE:-}" ]; then
  echo "== ack latency at $HALF_RATE records/s (logs, gRPC)"
  start; load --signal logs --protocol grpc --endpoint 127.0.0.1:24317 --rate "$HALF_RATE"; stop
fi

if [ -n "${OVERLOAD_RATE:-}" ]; then
  echo "== overload: $OVERLOAD_RATE records/s offered over 16 connections (logs, gRPC, default 256MiB budget)"
  start; CONNECTIONS=16 load --signal logs --protocol grpc --endpoint 127.0.0.1:24317 --rate "$OVERLOAD_RATE"; stop
fi
