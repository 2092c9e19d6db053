#!/usr/bin/env bash
# Store benchmarks of issue 3, as recorded in BENCHMARKS.md: bytes on disk per
# record after compaction, flush and compaction throughput and CPU share
# during sustained ingest, peak RSS. Not part of CI.
#   DURATION=60 SIGNALS="logs spans" ./scripts/bench-store.sh
# The load generator sends freshly generated records (`--fresh`: no batch is
# sent twice, so repeats do not flatter compression) unless CYCLE=1.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lumen-target}"
[ -n "${SKIP_BUILD:-}" ] || cargo build --release --bin lumen
BIN="${BIN:-$CARGO_TARGET_DIR/release/lumen}"
DURATION="${DURATION:-60}"
DATA="$(mktemp -d)"
if [ -n "${CYCLE:-}" ]; then MODE=""; else MODE="--fresh"; fi
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$DATA"' EXIT

# CPU ticks of the process and of its threads whose name matches the regex $2
# (compaction: its own thread and tantivy's indexing and merge threads).
ticks() { awk '{print $14+$15}' /proc/"$1"/stat; }
thread_ticks() {
  local sum=0
  for t in /proc/"$1"/task/*; do
    if [[ "$(cat "$t/comm" 2>/dev/null)" =~ $2 ]]; then sum=$((sum + $(awk '{print $14+$15}' "$t/stat" 2>/dev/null || echo 0))); fi
  done
  echo $sum
}
# tantivy's indexing threads end with each merge (and take their CPU ticks
# with them), so compaction's share is what is left of the process's CPU after
# the long-lived ingest and flush threads.
INGEST='^(tokio-rt-worker|lumen-wal|lumen-io|lumen)$'
compact_ticks() { echo $(( $(ticks "$1") - $(thread_ticks "$1" '^lumen-flush$') - $(thread_ticks "$1" "$INGEST") )); }
metric() { curl -sf 127.0.0.1:27070/metrics | awk -v m="$1" '$1==m {print $2}'; }

for signal in ${SIGNALS:-logs spans}; do
  rm -rf "$DATA/d"
  "$BIN" serve --data-dir "$DATA/d" --otlp-grpc-addr 127.0.0.1:24317 --otlp-http-addr 127.0.0.1:24318 \
    --http-addr 127.0.0.1:27070 > "$DATA/serve.log" 2>&1 &
  SERVER=$!
  until curl -sf 127.0.0.1:27070/health > /dev/null; do sleep 0.2; done
  # Peak anonymous and file-backed RSS, sampled every 0.2 s: file-backed pages
  # (mmap'd index files) are reclaimable, the anonymous part is the heap.
  ( anon=0; file=0; while kill -0 $SERVER 2>/dev/null; do
      read -r a f < <(awk '/RssAnon/ {a=int($2/1024)} /RssFile/ {f=int($2/1024)} END {print a+0, f+0}' /proc/$SERVER/status 2>/dev/null || echo "0 0")
      [ "$a" -gt "$anon" ] && anon=$a; [ "$f" -gt "$file" ] && file=$f
      echo "$anon $file" > "$DATA/rss.$signal"; sleep 0.2
    done ) &
  t0=$(ticks $SERVER); f0=$(thread_ticks $SERVER '^lumen-flush$'); c0=$(compact_ticks $SERVER)
  result=$("$BIN" loadgen --signal "$signal" --protocol grpc --endpoint 127.0.0.1:24317 \
    --connections 4 --duration "$DURATION" --watch-pid $SERVER $MODE | grep '^result')
  t1=$(ticks $SERVER); f1=$(thread_ticks $SERVER '^lumen-flush$'); c1=$(compact_ticks $SERVER)
  # Let compaction finish: every segment indexed, no merge running, and no
  # new merge for 10 s (a long merge is not idleness).
  last=-1; stable=0; crss=0
  while [ $stable -lt 10 ]; do
    rss=$(awk '/VmRSS/ {print int($2/1024)}' /proc/$SERVER/status); [ "$rss" -gt "$crss" ] && crss=$rss
    now=$(metric lumen_compactions_total)
    if [ "$now" = "$last" ] && [ "$(metric lumen_segments_unindexed)" = "0" ] && [ "$(metric lumen_compaction_running)" = "0" ]; then
      stable=$((stable + 1))
    else
      stable=0; last=$now
    fi
    sleep 1
  done
  t2=$(ticks $SERVER); c2=$(compact_ticks $SERVER)
  records=$(curl -sf 127.0.0.1:27070/metrics | awk -v s="$signal" '$1 ~ /^lumen_records_received_total/ && $1 ~ s {print $2}')
  flushed=$(metric lumen_flushed_rows_total); flush_s=$(metric lumen_flush_seconds_sum)
  compacted=$(metric lumen_compacted_rows_total); compact_s=$(metric lumen_compaction_seconds_sum)
  indexed=$(metric lumen_indexed_rows_total); concatenations=$(metric lumen_compactions_concatenated_total)
  compactions=$(metric lumen_compactions_total)
  hwm=$(awk '/VmHWM/ {print int($2/1024)}' /proc/$SERVER/status)
  read -r anon_peak file_peak < "$DATA/rss.$signal"
  kill -TERM $SERVER; wait $SERVER || true
  parquet=$(find "$DATA/d/segments" -name '*.parquet' -printf '%s\n' | awk '{s+=$1} END {print s+0}')
  idx=$(find "$DATA/d/segments" -name '*.idx' -printf '%s\n' | awk '{s+=$1} END {print s+0}')
  catalog=$(stat -c %s "$DATA/d/catalog.json")
  segments=$(find "$DATA/d/segments" -name '*.parquet' | wc -l)
  wire=$(echo "$result" | sed -E 's/.*records\/s=([0-9.]+) MB\/s=([0-9.]+).*/\2 \1/' | awk '{printf "%.1f", $1*1e6/$2}')
  echo "== $signal"
  echo "$result"
  awk -v r="$records" -v p="$parquet" -v i="$idx" -v c="$catalog" -v w="$wire" -v n="$segments" \
      -v fl="$flushed" -v fs="$flush_s" -v co="$compacted" -v cs="$compact_s" -v k="$compactions" -v ix="$indexed" -v kc="$concatenations" \
      -v t="$((t1 - t0))" -v f="$((f1 - f0))" -v cc="$((c1 - c0))" -v cc2="$((c2 - c1))" -v ta="$((t2 - t1))" -v h="$hwm" -v cr="$crss" -v an="$anon_peak" -v fi="$file_peak" 'BEGIN {
    tot = p + i + c
    printf "records=%d wire_bytes_per_record=%s parquet=%d index=%d catalog=%d segments=%d compactions=%d\n", r, w, p, i, c, n, k
    printf "bytes_per_record=%.2f (parquet %.2f + index %.2f) = %.2f%% of OTLP protobuf\n", tot/r, p/r, i/r, 100*tot/r/w
    printf "flush: %d rows in %.1f s = %.0f rows/s; compaction: %d rows indexed in place + %d merged (%d of %d merges by concatenation) in %.1f s = %.0f rows/s\n", fl, fs, fl/fs, ix, co, kc, k, (cs > 0 ? cs : 1), (ix+co)/(cs > 0 ? cs : 1)
    printf "CPU during ingest: server %.2f cores; flusher %.0f%% of it, compactor %.0f%%; after ingest: compactor %.1f s of CPU\n", t/100/'"$DURATION"', 100*f/t, 100*cc/t, cc2/100
    printf "peak RSS (VmHWM, whole run incl. compaction) %d MiB; peak RSS while compacting after ingest %d MiB\n", h, cr
    printf "peak RssAnon %d MiB, peak RssFile %d MiB (sampled every 0.2 s over the whole run)\n", an, fi
  }'
  echo "compaction steps:"
  sed 's/\x1b\[[0-9;]*m//g' "$DATA/serve.log" | grep -E 'merged segments|indexed segment' \
    | sed -E 's/.*(indexed segment|merged segments) signal=[a-z]+ partition=[^ ]+ /  \1: /'
  "$BIN" inspect --data-dir "$DATA/d" --fields
done
