#!/usr/bin/env bash
# Run the atheris harnesses of this directory, one after the other:
#   bash fuzz/run.sh [SECONDS_PER_HARNESS] [HARNESS...]
# SECONDS_PER_HARNESS defaults to 60; HARNESS is a name such as "receiver" (fuzz_receiver.py),
# all of them by default. Each harness starts from a writable copy of its seed corpus,
# fuzz/corpus/<harness>/, in a temporary directory, so the committed corpus stays as it is.
# Prints per harness the inputs executed, the inputs per second, the coverage (libFuzzer's cov:
# of the last status line) and the crashes; exits 1 if any harness crashed or hung (an input
# running over FUZZ_TIMEOUT seconds, default 10). Crashing inputs are kept in FUZZ_ARTIFACTS
# (default fuzz/crashes/); replay one with: python fuzz/fuzz_<harness>.py <file>.
# Environment: PYTHON (default python3; needs atheris and wsfast's dependencies), FUZZ_NICE
# (default 19: the run yields the CPU to everything else), FUZZ_ARTIFACTS, FUZZ_TIMEOUT.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
PYTHON="${PYTHON:-python3}"
SECONDS_EACH="${1:-60}"
shift || true
ARTIFACTS="${FUZZ_ARTIFACTS:-$HERE/crashes}"
TIMEOUT="${FUZZ_TIMEOUT:-10}"
NICE="${FUZZ_NICE:-19}"

if [ "$#" -gt 0 ]; then
    harnesses=("$@")
else
    harnesses=()
    for file in "$HERE"/fuzz_*.py; do
        name="$(basename "$file" .py)"
        harnesses+=("${name#fuzz_}")
    done
fi

if ! "$PYTHON" -c "import atheris" 2>/dev/null; then
    echo "fuzz/run.sh: atheris is not installed for $PYTHON (pip install atheris)" >&2
    exit 2
fi

WORK="$(mktemp -d -t wsfast-fuzz-XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$ARTIFACTS"
export PYTHONPATH="$REPO:$HERE${PYTHONPATH:+:$PYTHONPATH}"

status=0
table="$(printf '%-12s %12s %10s %8s %8s' harness executed 'exec/s' cov crashes)"
for name in "${harnesses[@]}"; do
    script="$HERE/fuzz_$name.py"
    if [ ! -f "$script" ]; then
        echo "fuzz/run.sh: no harness $script" >&2
        status=1
        continue
    fi
    corpus="$WORK/corpus-$name"
    mkdir -p "$corpus"
    if [ -d "$HERE/corpus/$name" ]; then
        cp "$HERE/corpus/$name"/* "$corpus"/ 2>/dev/null || true
    fi
    log="$WORK/$name.log"
    before="$(ls "$ARTIFACTS" | grep -c "^$name-" || true)"
    start=$(date +%s)
    echo "=== fuzz $name: ${SECONDS_EACH}s" >&2
    nice -n "$NICE" "$PYTHON" "$script" "$corpus" \
        -max_total_time="$SECONDS_EACH" -rss_limit_mb=1024 -timeout="$TIMEOUT" -max_len=4096 \
        -print_final_stats=1 -artifact_prefix="$ARTIFACTS/$name-" >"$log" 2>&1
    rc=$?
    elapsed=$(( $(date +%s) - start ))
    executed="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
    cov="$(grep -o ' cov: [0-9]*' "$log" | tail -1 | tr -dc '0-9')"
    after="$(ls "$ARTIFACTS" | grep -c "^$name-" || true)"
    crashes=$(( after - before ))
    if [ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ]; then
        crashes=1  # it died without writing an artifact (atheris missing a module, say)
    fi
    rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)"
    [ "${rate:-0}" != 0 ] || rate=$(( ${executed:-0} / (elapsed > 0 ? elapsed : 1) ))
    table+=$'\n'"$(printf '%-12s %12s %10s %8s %8s' "$name" "${executed:-?}" "$rate" "${cov:-?}" "$crashes")"
    if [ "$crashes" -ne 0 ]; then
        status=1
        echo "--- fuzz $name failed (exit $rc); end of its log:" >&2
        grep -v '^INFO: Instrumenting' "$log" | tail -40 >&2
    fi
done
echo "$table"
exit "$status"
