# Session 38, for the next session with a GPU (notes-38). First re-apply the causal backward's launch order and its
# simulation: `git revert --no-edit d299a70 602c636` (reverts of 9f97711 and f6ed09d), and export the plain order:
# `mkdir -p _trees/plain && git archive c40119f cuteattn | tar -x -C _trees/plain`; carry [".gpu", "_trees"]. Then
# this times the kernel's key-block order (longest first by L2 groups) against the plain one at causal hdims 128
# and 64, 1k/4k/16k, FA4 in the same run, and runs the backward tests on the checkout (the whole file; arguments:
# a -k filter (the tests' ids say causal as True), the tests' and the comparison's time limits, the seqlens).
# About 450 s.
filter=${1:-} tests_s=${2:-330} order_s=${3:-230} seqlens=${4:-}; set --
source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
timeout "$order_s" bash scripts/compare_trees.sh "--direction bwd --hdims 128,64 \
  --seqlens ${seqlens:-1k,4k,16k} --causal 1 --rounds 3 --warmup-ms 300 --variants default=" 2>&1 | tee $OUT/order.log
timeout "$tests_s" python3 -m pytest tests/test_gpu_bwd_sm90.py -q -n 12 -p no:cacheprovider \
  ${filter:+-k "$filter"} > $OUT/bwd_tests.log 2>&1
tail -3 $OUT/bwd_tests.log
