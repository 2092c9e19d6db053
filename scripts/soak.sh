#!/usr/bin/env bash
# Issue 7's soak and overload measurements, as recorded in BENCHMARKS.md.
# One release server on a fresh data directory (default 256MiB budget):
#   1. soak: logs over gRPC at RATE records/s for SOAK seconds, while
#      `lumen soak-clients` runs 4 live-tail subscribers and a query loop;
#   2. overload: OVERLOAD_RATE records/s offered over 16 connections for
#      OVERLOAD seconds;
#   3. recovery: 30 s at a quarter of RATE, which must see no refusals.
# RSS, the budget gauge and the count of segments not indexed yet (the
# compaction backlog: bounded only if indexing keeps up with the rate) are
# sampled every 2 s into $OUT/samples.tsv.
# Not part of CI.
#   RATE=150000 SOAK=600 OVERLOAD_RATE=400000 OVERLOAD=120 ./scripts/soak.sh
# SKIP_BUILD=1 BIN=/path/to/lumen runs a given build instead; SERVE_ARGS adds
# flags to `lumen serve` (e.g. SERVE_ARGS="--compaction-nice 0").
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lumen-target-release}"
[ -n "${SKIP_BUILD:-}" ] || cargo build --release --bin lumen
BIN="${BIN:-$CARGO_TARGET_DIR/release/lumen}"
RATE="${RATE:-150000}"
SOAK="${SOAK:-600}"
OVERLOAD_RATE="${OVERLOAD_RATE:-400000}"
OVERLOAD="${OVERLOAD:-120}"
OUT="${OUT:-$(mktemp -d)}"
mkdir -p "$OUT"
DATA="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$DATA"' EXIT

# shellcheck disable=SC2086 # SERVE_ARGS is a list of flags
"$BIN" serve --data-dir "$DATA/d" --otlp-grpc-addr 127.0.0.1:24317 --otlp-http-addr 127.0.0.1:24318 \
  --http-addr 127.0.0.1:27070 ${SERVE_ARGS:-} > "$OUT/serve.log" 2>&1 &
SERVER=$!
until curl -sf 127.0.0.1:27070/health > /dev/null; do sleep 0.2; done

rss() { awk '/VmRSS/ {print int($2 / 1024)}' "/proc/$SERVER/status"; }
gauges() { # budget use (MiB), segments not indexed yet
  curl -sf 127.0.0.1:27070/metrics | awk '/^lumen_memory_budget_used_bytes/ {u = int($2 / 1048576)}
    /^lumen_segments_unindexed/ {x += $2} END {printf "%d\t%d", u, x}'
}
( while kill -0 "$SERVER" 2>/dev/null; do
    printf '%s\t%s\t%s\t%s\n' "$(date +%s)" "$(cat "$OUT/phase" 2>/dev/null || echo start)" "$(rss)" "$(gauges)"
    sleep 2
  done ) > "$OUT/samples.tsv" &
summary() { # phase → RSS start, peak and end, peak budget use (MiB), backlog
  awk -F'\t' -v p="$1" '$2 == p { if (!n++) { first = $3; ufirst = $5 } last = $3; ulast = $5
      if ($3 > peak) peak = $3; if ($4 > bpeak) bpeak = $4; if ($5 > upeak) upeak = $5 }
    END { printf "%s: rss_start_mib=%d rss_peak_mib=%d rss_end_mib=%d budget_used_peak_mib=%d unindexed_start=%d unindexed_peak=%d unindexed_end=%d samples=%d\n",
      p, first, peak, last, bpeak, ufirst, upeak, ulast, n }' "$OUT/samples.tsv"
}
echo "rss at start: $(rss) MiB"

echo soak > "$OUT/phase"
echo "== soak: $RATE logs/s over gRPC (4 connections) for $SOAK s, 4 tail subscribers, a query every 250 ms"
"$BIN" soak-clients --http 127.0.0.1:27070 --duration "$SOAK" > "$OUT/clients.log" &
CLIENTS=$!
"$BIN" loadgen --signal logs --protocol grpc --endpoint 127.0.0.1:24317 --connections 4 \
  --rate "$RATE" --duration "$SOAK" > "$OUT/soak.log"
wait "$CLIENTS"
grep '^result' "$OUT/soak.log" "$OUT/clients.log"
summary soak

echo overload > "$OUT/phase"
echo "== overload: $OVERLOAD_RATE logs/s offered over 16 connections for $OVERLOAD s"
"$BIN" loadgen --signal logs --protocol grpc --endpoint 127.0.0.1:24317 --connections 16 \
  --rate "$OVERLOAD_RATE" --duration "$OVERLOAD" > "$OUT/overload.log"
grep '^result' "$OUT/overload.log"
summary overload

echo recovery > "$OUT/phase"
echo "== recovery: $((RATE / 4)) logs/s for 30 s"
"$BIN" loadgen --signal logs --protocol grpc --endpoint 127.0.0.1:24317 --connections 4 \
  --rate "$((RATE / 4))" --duration 30 > "$OUT/recovery.log"
grep '^result' "$OUT/recovery.log"
summary recovery
curl -sf 127.0.0.1:27070/health > /dev/null && echo "healthy after: yes"
echo "logs stored: $(curl -sf -XPOST 127.0.0.1:27070/api/v1/sql -H 'content-type: application/json' \
  -d '{"query":"SELECT count(*) AS n FROM logs"}')"
kill -TERM "$SERVER"
code=0
wait "$SERVER" || code=$?
echo "server exit code: $code (logs in $OUT)"
