#!/usr/bin/env bash
# run_fuzz.sh BINARY — runs a libFuzzer target for $CUTOFF_FUZZ_SECONDS (default 60), seeded
# from the bounce corpus (../shared/corpora/bounces). Skips (77) when the target was not built
# or the corpus is absent. A crash, leak, timeout or sanitizer report fails the test; the input
# that caused it is kept in $CUTOFF_BUILD_DIR/fuzz-artifacts/ (reproduce: BINARY FILE).
set -u
bin=${1:-}
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
    echo "SKIP: the fuzz target was not built: clang with libFuzzer is missing" \
         "(apt-get install clang libclang-rt-14-dev, then re-run cmake)"
    exit 77
fi
corpus=${CUTOFF_SHARED:-../shared}/corpora/bounces
if [ ! -d "$corpus/maildir" ]; then
    echo "SKIP: $corpus is absent: no seed corpus"
    exit 77
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/cutoff-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
artifacts=${CUTOFF_BUILD_DIR:-$work}/fuzz-artifacts
mkdir -p "$artifacts"
# New inputs go to the scratch folder (first); the shared corpus is only read. libFuzzer's
# own default exit status for a crash is 77, which CTest would take for "skipped": set 1.
"$bin" -max_total_time="${CUTOFF_FUZZ_SECONDS:-60}" -max_len=131072 -timeout=10 \
    -rss_limit_mb=2048 -error_exitcode=1 -timeout_exitcode=1 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" "$work" "$corpus/maildir" "$corpus/mailbox" 2>"$work/log"
rc=$?
grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb|INFO: seed corpus)' "$work/log"
if [ "$rc" -ne 0 ]; then
    tail -40 "$work/log"
    echo "FAIL: the fuzzer found a problem (exit $rc); the input is in $artifacts/"
    exit 1
fi
echo "fuzz: clean for ${CUTOFF_FUZZ_SECONDS:-60} s"
