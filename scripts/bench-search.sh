#!/usr/bin/env bash
# Log search benchmarks of issue 4, as recorded in BENCHMARKS.md: loads
# RECORDS fresh log records (lumen loadgen --fresh), waits until every
# segment is indexed, then times each search RUNS times over HTTP (curl,
# median and p90 of the total time) and the same question asked of DuckDB
# scanning the same Parquet files with LIKE. Not part of CI.
#   DURATION=70 ./scripts/bench-search.sh
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
HTTP=127.0.0.1:27071

"$BIN" serve --data-dir "$DATA/d" --otlp-grpc-addr 127.0.0.1:24327 --otlp-http-addr 127.0.0.1:24328 \
  --http-addr $HTTP > "$DATA/serve.log" 2>&1 &
until curl -sf $HTTP/health > /dev/null; do sleep 0.2; done
metric() { curl -sf $HTTP/metrics | awk -v m="$1" '$1==m {print $2}'; }
if [ "$(metric lumen_segments)" = "0" ]; then
  "$BIN" loadgen --signal logs --protocol grpc --endpoint 127.0.0.1:24327 --connections 4 \
    --duration "$DURATION" --fresh | grep '^result'
fi
stable=0
while [ $stable -lt 5 ]; do
  if [ "$(metric lumen_segments_unindexed)" = "0" ] && [ "$(metric lumen_compaction_running)" = "0" ]; then
    stable=$((stable + 1)); else stable=0; fi
  sleep 1
done
echo "segments=$(metric lumen_segments) records=$(curl -sf $HTTP/api/v1/sql -d '{"query":"SELECT count(*) AS n FROM logs"}')"

# name | search query | histogram? | DuckDB WHERE
CASES=(
  "rare term|123456||body LIKE '%123456%'"
  "common term|timeout||body LIKE '%timeout%'"
  "phrase|\"connection reset\"||body LIKE '%connection reset%'"
  "attribute filter|attr.user.id:grace attr.http.method:DELETE||log_attributes['user.id'] = 'grace' AND log_attributes['http.method'] = 'DELETE'"
  "trace-free errors|severity:error -panic||severity_number BETWEEN 17 AND 20 AND body NOT LIKE '%panic%'"
  "histogram, all data|*|h|true"
  "histogram, common term|timeout|h|body LIKE '%timeout%'"
)
median() { sort -n | awk '{a[NR]=$1} END {m=a[int((NR+1)/2)]; p=a[int(NR*0.9+0.5)]; printf "%.1f %.1f", m*1000, p*1000}'; }
printf "%-24s %12s %10s %12s %8s %s\n" case "lumen p50 ms" "p90 ms" "duckdb p50" ratio results
for c in "${CASES[@]}"; do
  IFS='|' read -r name q hist where <<< "$c"
  if [ -n "$hist" ]; then url="/api/v1/logs/histogram"; extra=(--data-urlencode buckets=60); else url="/api/v1/logs/search"; extra=(--data-urlencode limit=100); fi
  out=$(curl -sfG $HTTP$url --data-urlencode "q=$q" "${extra[@]}")
  n=$(echo "$out" | "$PY" -c 'import json,sys; d=json.load(sys.stdin); print(len(d["logs"]) if "logs" in d else sum(b["count"] for b in d["buckets"]))')
  lumen=$(for _ in $(seq "$RUNS"); do curl -sfG -o /dev/null -w '%{time_total}\n' $HTTP$url --data-urlencode "q=$q" "${extra[@]}"; done | median)
  if [ -n "$hist" ]; then
    sql="SELECT time_bucket(INTERVAL '1 minute', timestamp) AS b, count(*) FROM read_parquet('$DATA/d/segments/logs/*/*.parquet') WHERE $where GROUP BY b"
  else
    sql="SELECT * FROM read_parquet('$DATA/d/segments/logs/*/*.parquet') WHERE $where ORDER BY timestamp DESC LIMIT 100"
  fi
  duck=$("$PY" - "$sql" "$RUNS" <<'EOF'
import duckdb, sys, time
sql, runs = sys.argv[1], int(sys.argv[2])
con = duckdb.connect()
ts = []
for _ in range(min(runs, 5)):
    # Counted inside DuckDB: the rows are produced, not converted to Python.
    t = time.perf_counter(); con.execute(f"SELECT count(*) FROM ({sql})").fetchall(); ts.append(time.perf_counter() - t)
ts.sort(); print(f"{ts[len(ts)//2]*1000:.1f}")
EOF
)
  read -r p50 p90 <<< "$lumen"
  printf "%-24s %12s %10s %12s %8s %s\n" "$name" "$p50" "$p90" "$duck" "$(awk -v a="$duck" -v b="$p50" 'BEGIN {printf "%.1fx", a/b}')" "$n"
done
