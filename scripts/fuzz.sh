#!/usr/bin/env bash
# Fuzzes the protocol crate (and the client's listing parser): builds every cargo-fuzz target
# in fuzz/ and runs each for SECONDS_PER_TARGET seconds (default 60), one after the other.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]
#
# Each target starts from its tracked seeds (fuzz/seeds/T, real FTP traffic) and the corpus it
# grew on earlier runs (fuzz/corpus/T, untracked). Prints one summary line per target (runs,
# and libFuzzer's last `cov:`/`ft:`/`corp:`/`exec/s` figures) and exits non-zero if any target
# found a crash, a leak, a timeout (a slow input: -timeout) or ran out of memory; the input that
# did it is in fuzz/artifacts/T/ (replay: `RUSTC_BOOTSTRAP=1 cargo fuzz run T FILE`), the
# whole log in fuzz/target/logs/T.log.
#
# cargo-fuzz needs nightly-only compiler flags (sanitizer, coverage instrumentation); the
# machine has one stable toolchain, so RUSTC_BOOTSTRAP=1 unlocks them. FUZZ_SANITIZER=none
# builds without AddressSanitizer (faster; the Rust code is memory-safe, ASan mostly guards
# the C code of libFuzzer and ring). Runs non-interactively (CI=true, no stdin).
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-60}"
if ! [[ "$secs" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 [SECONDS_PER_TARGET]" >&2
  exit 2
fi

export RUSTC_BOOTSTRAP=1
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install cargo-fuzz --locked </dev/null
fi

targets=(line_framer command_parse addr virtual_path reply_parser listing_parse)
# The same flags for build and run, or `cargo fuzz run` would rebuild. -a: debug assertions
# (integer overflow panics).
build_flags=(--release -a -s "${FUZZ_SANITIZER:-address}")

start=$SECONDS
echo "building ${#targets[@]} fuzz targets"
cargo fuzz build "${build_flags[@]}" </dev/null
echo "built in $((SECONDS - start))s"

mkdir -p fuzz/target/logs
failed=()
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t" "fuzz/seeds/$t"
  log="fuzz/target/logs/$t.log"
  status=ok
  # -timeout: an input that takes 10 s is a hang or a blow-up; -rss_limit_mb also caps
  # single allocations (malloc_limit_mb defaults to it).
  if ! cargo fuzz run "${build_flags[@]}" "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    </dev/null >"$log" 2>&1; then
    status=FAILED
    failed+=("$t")
  fi
  # libFuzzer's last status line: "#N  DONE  cov: C ft: F corp: K/Sb ... exec/s: E rss: RMb".
  stats=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
  field() { sed -nE "s#.*[[:space:]]$1:[[:space:]]*([^[:space:]]+).*#\1#p" <<<"$stats"; }
  runs=$(sed -nE 's/^#([0-9]+).*/\1/p' <<<"$stats")
  printf '%-14s %-6s runs=%-9s cov=%-5s ft=%-6s corp=%-12s exec/s=%s\n' \
    "$t" "$status" "${runs:-?}" "$(field cov)" "$(field ft)" "$(field corp)" "$(field exec/s)"
  if [ "$status" != ok ]; then
    echo "---- $t: end of $log" >&2
    grep -E 'panicked|ERROR: libFuzzer|SUMMARY|Test unit written|Reproduce with' "$log" >&2 || true
    tail -n 30 "$log" >&2
  fi
done

echo "fuzzed ${#targets[@]} targets for ${secs}s each; $((SECONDS - start))s in all"
if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
