#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for a fixed time each (libFuzzer through
# cargo fuzz, on the nightly toolchain) and prints executions and crashes
# per target, as recorded in BENCHMARKS.md. Not part of CI. Without a
# sanitizer: the crates forbid unsafe code, so a panic, an overflow (debug
# assertions), a hang or runaway memory is what a crash here means.
#   SECONDS_PER_TARGET=300 ./scripts/fuzz.sh [target...]
# Corpora stay in fuzz/corpus/<target> (not committed); a crash leaves its
# input in fuzz/artifacts/<target>/ and becomes a regression test.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
command -v cargo-fuzz > /dev/null || cargo install cargo-fuzz --locked
rustup toolchain list | grep -q nightly || { echo "needs the nightly toolchain" >&2; exit 1; }
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/lumen-fuzz-target}"
SECONDS_PER_TARGET="${SECONDS_PER_TARGET:-300}"
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(otlp_protobuf otlp_json search_query promql wal_replay)
# Debug assertions on (overflow checks), optimised; one job: the machine has two cores.
cargo +nightly fuzz build --debug-assertions --sanitizer none 2> build.log || { tail -30 build.log; exit 1; }
for t in "${TARGETS[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  seeds="seeds/$t"
  [ -d "$seeds" ] || seeds=""
  log="$(mktemp)"
  status=0
  # WAL replay writes, truncates and fsyncs real files: on a tmpfs, where
  # fsync is free, it runs ~100x faster.
  [ -w /dev/shm ] && export TMPDIR=/dev/shm
  cargo +nightly fuzz run --debug-assertions --sanitizer none "$t" "corpus/$t" $seeds -- \
    -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -print_final_stats=1 > "$log" 2>&1 || status=$?
  execs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log")
  rate=$(awk '/stat::average_exec_per_sec/ {print $2}' "$log")
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | awk '{print $2}')
  crashes=$(find "artifacts/$t" -type f | wc -l)
  echo "result: target=$t seconds=$SECONDS_PER_TARGET execs=${execs:-?} execs_per_s=${rate:-?} coverage=${cov:-?} exit=$status artifacts=$crashes"
  [ "$status" -eq 0 ] || grep -m5 -E "panicked|ERROR: libFuzzer|SUMMARY" "$log" || true
  rm -f "$log"
done
