#!/usr/bin/env bash
# On the GPU machine, at the checkout's root: the GPU tests, the quickstart and the forward benchmark.
# Logs go under $OUT.
set -uo pipefail
source .gpu/setup.sh
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu --format=csv | tee "$OUT/gpu.txt"
python3 -m pytest -m gpu tests -q -rf 2>&1 | tee "$OUT/gpu_tests.log" | tail -25
python3 examples/quickstart.py 2>&1 | tee "$OUT/quickstart.log"
if [ "${BENCH:-1}" = 1 ]; then
  python3 benchmarks/bench.py ${BENCH_ARGS:-} --out "$OUT" 2>&1 | grep -v UserWarning > "$OUT/bench.log"
  tail -30 "$OUT/bench.log"
fi
