#!/usr/bin/env bash
# Trace benchmarks of issue 4, as recorded in BENCHMARKS.md: loads fresh
# spans (lumen loadgen --signal spans --fresh) for DURATION seconds, waits
# until every segment is indexed, then times over HTTP (curl, RUNS runs,
# median and p90): trace by id (a different trace each run), trace search by
# service + duration, by service + operation, and by service + tag; and the
# same questions asked of DuckDB scanning the same Parquet files. Then the
# live-tail latency at 10,000 records/s (lumen bench-tail; the server runs
# with --tail-max-rate 20000, over the default 5,000). Not part of CI.
#   DURATION=70 ./scripts/bench-traces.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lumen-target}"
[ -n "${SKIP_BUILD:-}" ] || cargo build --release --bin lumen
BIN="${BIN:-$CARGO_TARGET_DIR/release/lumen}"
PY="${PY:-$HOME/.cache/lumen-venv/bin/python}"
DURATION="${DURATION:-70}"
RUNS="${RUNS:-21}"
DATA="${DATA:-$(mktemp -d)}"; mkdir -p "$DATA"
KEEP="${KEEP:-}"
trap 'kill $(jobs -p) 2>/dev/null || true; [ -n "$KEEP" ] || rm -rf "$DATA"' EXIT
HTTP=127.0.0.1:27171

"$BIN" serve --data-dir "$DATA/d" --otlp-grpc-addr 127.0.0.1:24427 --otlp-http-addr 127.0.0.1:24428 \
  --http-addr $HTTP --tail-max-rate 20000 > "$DATA/serve.log" 2>&1 &
until curl -sf $HTTP/health > /dev/null; do sleep 0.2; done
metric() { curl -sf $HTTP/metrics | awk -v m="$1" '$1==m {print $2}'; }
sql() { curl -sf $HTTP/api/v1/sql -d "{\"query\": \"$1\"}"; }
if [ "$(metric lumen_segments)" = "0" ]; then
  "$BIN" loadgen --signal spans --protocol grpc --endpoint 127.0.0.1:24427 --connections 4 \
    --duration "$DURATION" --fresh | grep '^result'
fi
stable=0
while [ $stable -lt 5 ]; do
  if [ "$(metric lumen_segments_unindexed)" = "0" ] && [ "$(metric lumen_compaction_running)" = "0" ]; then
    stable=$((stable + 1)); else stable=0; fi
  sleep 1
done
echo "segments=$(metric lumen_segments) spans=$(sql 'SELECT count(*) AS n FROM spans')"
FILES="$DATA/d/segments/spans/*/*.parquet"

# Trace ids spread over the data: the first span id of each of RUNS buckets of the id space.
mapfile -t IDS < <(sql "SELECT min(trace_id) AS t FROM spans GROUP BY substr(trace_id, 1, 2) ORDER BY t LIMIT $RUNS" |
  "$PY" -c 'import json,sys; [print(r["t"]) for r in json.load(sys.stdin)["rows"]]')
SERVICE=$(sql "SELECT service_name AS s FROM spans GROUP BY 1 ORDER BY count(*) DESC LIMIT 1" |
  "$PY" -c 'import json,sys; print(json.load(sys.stdin)["rows"][0]["s"])')
pct() { sort -n | awk '{a[NR]=$1} END {m=a[int((NR+1)/2)]; p=a[int(NR*0.9+0.5)]; printf "%.1f %.1f", m*1000, p*1000}'; }
duck() {
  "$PY" - "$1" <<'EOF'
import duckdb, sys, time
con = duckdb.connect()
ts = []
for _ in range(5):
    t = time.perf_counter(); con.execute(f"SELECT count(*) FROM ({sys.argv[1]})").fetchall(); ts.append(time.perf_counter() - t)
ts.sort(); print(f"{ts[len(ts)//2]*1000:.1f}")
EOF
}
printf "%-34s %12s %10s %12s %8s %s\n" case "lumen p50 ms" "p90 ms" "duckdb p50" ratio result
row() { # name p50 p90 duck result
  printf "%-34s %12s %10s %12s %8s %s\n" "$1" "$2" "$3" "$4" "$(awk -v a="$4" -v b="$2" 'BEGIN {printf "%.1fx", a/b}')" "$5"
}

spans=$(curl -sf "$HTTP/api/traces/${IDS[0]}" | "$PY" -c 'import json,sys; print(len(json.load(sys.stdin)["data"][0]["spans"]))')
read -r p50 p90 <<< "$(for id in "${IDS[@]}"; do curl -sf -o /dev/null -w '%{time_total}\n' "$HTTP/api/traces/$id"; done | pct)"
row "trace by id" "$p50" "$p90" "$(duck "SELECT * FROM read_parquet('$FILES') WHERE trace_id = '${IDS[1]}'")" "$spans spans"

search() { # name duck-where params...
  local name=$1 where=$2; shift 2
  local n
  n=$(curl -sfG "$HTTP/api/traces" "$@" | "$PY" -c 'import json,sys; print(len(json.load(sys.stdin)["data"]))')
  read -r p50 p90 <<< "$(for _ in $(seq "$RUNS"); do curl -sfG -o /dev/null -w '%{time_total}\n' "$HTTP/api/traces" "$@"; done | pct)"
  row "$name" "$p50" "$p90" "$(duck "SELECT * FROM read_parquet('$FILES') WHERE trace_id IN (SELECT trace_id FROM read_parquet('$FILES') WHERE $where GROUP BY trace_id ORDER BY max(start_time) DESC LIMIT 20)")" "$n traces"
}
START=0
search "search: service + minDuration 400ms" "service_name = '$SERVICE' AND duration_ns >= 400000000" \
  --data-urlencode "service=$SERVICE" --data-urlencode minDuration=400ms --data-urlencode limit=20 --data-urlencode start=$START
search "search: service + operation" "service_name = '$SERVICE' AND name = 'GET /api/cart'" \
  --data-urlencode "service=$SERVICE" --data-urlencode "operation=GET /api/cart" --data-urlencode limit=20 --data-urlencode start=$START
search "search: service + error tag" "service_name = '$SERVICE' AND status_code = 'STATUS_CODE_ERROR'" \
  --data-urlencode "service=$SERVICE" --data-urlencode 'tags={"error":"true"}' --data-urlencode limit=20 --data-urlencode start=$START

echo "live tail at 10,000 records/s:"
"$BIN" bench-tail --otlp-http 127.0.0.1:24428 --http $HTTP --rate 10000 --duration "${TAIL_DURATION:-30}" | grep '^result'
