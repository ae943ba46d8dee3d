# Session 38, with little device time left: s51 cut down. The causal backward at hdim 128, 1k and 4k, under the
# kernel's key-block order (9f97711) against the plain one (_trees/plain; carry [".gpu", "_trees"]) and FA4; then
# the causal backward tests at hdims 64 and 128 (GQA and deterministic too). About 200 s.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
timeout 100 bash scripts/compare_trees.sh "--direction bwd --hdims 128 --seqlens 1k,4k --causal 1 --rounds 3 \
  --warmup-ms 300 --variants default=" 2>&1 | tee $OUT/order.log
timeout 95 python3 -m pytest tests/test_gpu_bwd_sm90.py -q -n 12 -p no:cacheprovider -k "(test_backward and True and \
  not split and not 192 and not 256 and not 96) or (test_deterministic and True) or (test_gqa and True)" \
  > $OUT/bwd_tests.log 2>&1
tail -3 $OUT/bwd_tests.log
