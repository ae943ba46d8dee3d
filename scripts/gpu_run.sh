#!/usr/bin/env bash
# One GPU call: tests, quickstart, sanitizers, host overhead, then the full benchmark; logs under $OUT.
set -uo pipefail
source .gpu/setup.sh
python3 -m pytest -m gpu tests -q -rf -n 8 2>&1 | tee "$OUT/gpu_tests.log" | tail -3
python3 examples/quickstart.py > "$OUT/quickstart.log" 2>&1; tail -4 "$OUT/quickstart.log"
for tool in racecheck memcheck; do
  compute-sanitizer --tool $tool --report-api-errors no --error-exitcode 9 python3 scripts/sanitize_cases.py > "$OUT/sanitizer-$tool.log" 2>&1
  echo "compute-sanitizer $tool: exit $?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|hazard" "$OUT/sanitizer-$tool.log" | head -3
done
python3 benchmarks/host_overhead.py 2>&1 | grep -v Warning | tee "$OUT/host_overhead.log"
python3 benchmarks/bench.py ${BENCH_ARGS:-} --out "$OUT" 2>&1 | grep -v -i warning > "$OUT/bench.log"; tail -27 "$OUT/bench.log"
