#!/usr/bin/env bash
# PromQL benchmarks of issue 5, as recorded in BENCHMARKS.md. Loads a day of
# the counter workload of `lumen bench-promql` (SERIES series, one point every
# INTERVAL s), waits until flushes and compactions settle, and reports bytes
# per sample on disk (QUIET_WAIT=0 skips the wait for the final merges);
# then loads a day of HISTOGRAMS histograms and times
# the range queries of the issue (24 h, 60 s step, RUNS runs, REPEAT rounds).
# Not part of CI.
#   ./scripts/bench-promql.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lumen-target}"
[ -n "${SKIP_BUILD:-}" ] || cargo build --release --bin lumen
BIN="${BIN:-$CARGO_TARGET_DIR/release/lumen}"
SERIES="${SERIES:-1000}"
HISTOGRAMS="${HISTOGRAMS:-100}"
INTERVAL="${INTERVAL:-15}"
RUNS="${RUNS:-11}"
DATA="${DATA:-$(mktemp -d)}"; mkdir -p "$DATA"
KEEP="${KEEP:-}"
trap 'kill $(jobs -p) 2>/dev/null || true; [ -n "$KEEP" ] || rm -rf "$DATA"' EXIT
HTTP=127.0.0.1:27271
OTLP=127.0.0.1:24528
END=$(( $(date +%s) / 60 * 60 ))

"$BIN" serve --data-dir "$DATA/d" --otlp-grpc-addr 127.0.0.1:24527 --otlp-http-addr $OTLP \
  --http-addr $HTTP > "$DATA/serve.log" 2>&1 &
until curl -sf $HTTP/health > /dev/null; do sleep 0.2; done
metric() { curl -sf $HTTP/metrics | awk -v m="$1" '$1==m {print $2}'; }
settle() {
  # A finished metrics partition's few small segments are merged once it has
  # been quiet for 10x the index delay (5 min by default): wait for that.
  sleep "${QUIET_WAIT:-320}"
  local stable=0
  while [ $stable -lt 5 ]; do
    if [ "$(metric lumen_buffer_bytes)" = "0" ] && [ "$(metric lumen_compaction_running)" = "0" ]; then
      stable=$((stable + 1)); else stable=0; fi
    sleep 1
  done
}
bench() { "$BIN" bench-promql --otlp-http $OTLP --http $HTTP --end "$END" --interval "$INTERVAL" "$@"; }

bench --load counters --series "$SERIES"
# The buffer flushes on its interval (30 s by default); wait for it and for compaction.
settle
samples=$(curl -sf $HTTP/api/v1/sql -d '{"query": "SELECT count(*) AS n FROM metrics"}' | sed 's/.*"n":\([0-9]*\).*/\1/')
bytes=$(metric lumen_segment_bytes)
echo "counters: samples=$samples segments=$(metric lumen_segments) parquet_bytes=$bytes bytes_per_sample=$(awk -v b="$bytes" -v n="$samples" 'BEGIN {printf "%.2f", b/n}')"
"$BIN" inspect --data-dir "$DATA/d" 2>/dev/null | grep -i metrics || true

bench --load histograms --histograms "$HISTOGRAMS"
settle
echo "after histograms: segments=$(metric lumen_segments) parquet_bytes=$(metric lumen_segment_bytes)"
# REPEAT rounds of RUNS runs each, on the same data (this machine is noisy).
for _ in $(seq "${REPEAT:-1}"); do
bench --runs "$RUNS" \
  --query 'sum by (service) (rate(http_server_requests_total[5m]))' \
  --query 'histogram_quantile(0.99, sum by (le) (rate(rpc_duration_seconds_bucket[5m])))' \
  --query 'sum(rate(http_server_requests_total{http_response_status_code=~"5.."}[5m])) / sum(rate(http_server_requests_total[5m]))' \
  --query 'topk(5, sum by (http_route) (increase(http_server_requests_total[1h])))'
done
