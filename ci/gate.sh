#!/usr/bin/env bash
# sqla-bench's regression gate for CI: BASE and NEW measured interleaved on this machine
# (base, new, base, new, ...: a machine that drifts reaches both alike), then compared.
#
#   bash ci/gate.sh BASE_PYTHON NEW_PYTHON OUT_DIR
#
# BASE_PYTHON and NEW_PYTHON are interpreters of two virtual environments, each with
# sqla-bench and the version of the code to compare installed (your application's
# scenarios or models, or a library upgrade). The environment sets the rest:
#   GATE_RUN_OPTIONS   options for every `sqla-bench run` (targets, --scenarios, --models)
#   GATE_RUNS          runs a side (default 5; the timing verdict says what slowdown they
#                      can detect: on a shared 2-core machine, only large ones; below 3,
#                      counts only)
#   GATE_INSTRUCTIONS  calls per cell counted in instructions in the last pair (default 5;
#                      0: none; needs valgrind)
#   GATE_TIMING        1: a slowdown by the timing gate fails the job too (exit 4);
#                      default 0: it is reported as advice
#   GATE_HISTORY       an A/A history file (`sqla-bench calibrate`, kept by CI as a cache):
#                      calls and instructions held to each cell's own spread, and its
#                      spread between runs pooled into the timing test
# Exit status: 0 pass, 1 a counted change (statements, rows, round trips, calls,
# instructions), 4 slower by the timing gate (GATE_TIMING=1), anything else an error.
# On GitHub Actions (GITHUB_ACTIONS=true) the verdicts are annotations and the table goes
# to the job summary.
set -euo pipefail

if (($# != 3)); then
  echo "usage: bash ci/gate.sh BASE_PYTHON NEW_PYTHON OUT_DIR" >&2
  exit 2
fi
base_python=$1 new_python=$2 out=$3
runs=${GATE_RUNS:-5}
counted=${GATE_INSTRUCTIONS:-5}
read -r -a options <<<"${GATE_RUN_OPTIONS:-}"
mkdir -p "$out/base" "$out/new"

measure() {  # measure SIDE PYTHON RUN: one run into OUT_DIR/SIDE/run-RUN.json
  local extra=()
  if (($3 == runs && counted > 0)); then extra=(--instructions "$counted"); fi
  # Exit 1 is a cell that differs from sqla-bench's catalogue: still a result, which the
  # comparison shows; 3 (a target failed part-way) or worse stops the gate.
  "$2" -m sqla_bench run "${options[@]}" "${extra[@]}" --output "$out/$1/run-$3.json" || {
    status=$?
    if ((status != 1)); then echo "the $1 run $3 failed (exit $status)" >&2; exit "$status"; fi
  }
}

for ((run = 1; run <= runs; run++)); do
  echo "== pair $run of $runs"
  measure base "$base_python" "$run"
  measure new "$new_python" "$run"
done

format=text
if [[ "${GITHUB_ACTIONS:-}" == true ]]; then format=github; fi
history=()
if [[ -n "${GATE_HISTORY:-}" ]]; then history=(--history "$GATE_HISTORY"); fi
timing=(--gate-timing)
if [[ "${GATE_TIMING:-0}" != 1 ]]; then timing+=(--timing-advises); fi
if ((runs < 3)); then  # the timing gate needs three runs a side; counts need one
  echo "GATE_RUNS is $runs: counts only, no timing verdict (it needs 3 runs a side)"
  timing=()
fi
exec "$new_python" -m sqla_bench compare "$out/base" "$out/new" "${timing[@]}" \
  --format "$format" "${history[@]}"
