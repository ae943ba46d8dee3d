#!/usr/bin/env bash
# On the GPU machine: the same benchmark (and tests) for the checkout and for each exported tree under _trees/,
# in one call, so that branches are compared on one GPU. Export a branch here first:
#   mkdir -p _trees/BRANCH && git archive BRANCH cuteattn | tar -x -C _trees/BRANCH
# then call the device with carry [".gpu", "_trees"]:
#   bash scripts/compare_trees.sh "--direction bwd --hdims 64 --seqlens 16k --causal 0 --variants default=" ["-k EXPR"]
# A second argument runs `pytest tests/test_gpu_bwd_sm90.py tests/test_gpu_mods_sm90.py` with it, per tree.
# Each tree's package takes the place of cuteattn/ for its turn (the machine's copy; the checkout's is put back).
# The checkout runs first, as "checkout". Logs: $OUT/<tree>.*.log, or with TAG set, $OUT/<TAG>.<tree>.*.log (two
# calls in one command keep each other's logs).
set -uo pipefail
source .gpu/setup.sh
sweep_args=$1 test_args=${2:-}
saved=$(mktemp -d)
cp -r cuteattn "$saved/"
for tree in checkout _trees/*/; do
  name=$(basename "$tree")
  log=$OUT/${TAG:+$TAG.}$name
  rm -rf cuteattn && cp -r "$([ "$tree" = checkout ] && echo "$saved" || echo "$tree")/cuteattn" .
  echo "== $name"
  # shellcheck disable=SC2086
  python3 benchmarks/sweep_sm90.py $sweep_args > "$log.sweep.log" 2>&1
  grep -E "^(fwd|bwd) |: " "$log.sweep.log" | grep -v -i warn
  if [ -n "$test_args" ]; then
    # shellcheck disable=SC2086
    python3 -m pytest tests/test_gpu_bwd_sm90.py tests/test_gpu_mods_sm90.py -q -n 8 -p no:cacheprovider $test_args \
      > "$log.tests.log" 2>&1
    echo "$name tests: $(tail -1 "$log.tests.log")"
  fi
done
rm -rf cuteattn && cp -r "$saved/cuteattn" .
