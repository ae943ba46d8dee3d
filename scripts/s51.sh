# Session 38: the causal backward's key blocks longest first by L2 groups (9f97711) against the plain order
# (c40119f's cuteattn, exported to _trees/plain; carry [".gpu", "_trees"]), causal hdims 128 and 64 at 1k/4k/16k,
# FA4 in the same run; then the backward tests on the checkout (the whole file, or with $1 a -k filter). About 450 s.
filter=${1:-} tests_s=${2:-330} order_s=${3:-230} seqlens=${4:-}; set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
timeout ${order_s:-230} bash scripts/compare_trees.sh "--direction bwd --hdims 128,64 --seqlens ${seqlens:-1k,4k,16k} --causal 1 \
  --rounds 3 --warmup-ms 300 --variants default=" 2>&1 | tee $OUT/order.log
timeout ${tests_s:-330} python3 -m pytest tests/test_gpu_bwd_sm90.py -q -n 12 -p no:cacheprovider ${filter:+-k "$filter"} \
  > $OUT/bwd_tests.log 2>&1
tail -3 $OUT/bwd_tests.log
