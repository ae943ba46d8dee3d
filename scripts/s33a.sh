# The backward's K and V on barriers of their own (V behind the first Q stage): GPU tests of the backward kernels
# (key split and split-d, window, split tail, GQA, deterministic, mods), then the checkout against _trees/main (the
# tree before) in one call, 3 rounds a cell, FA4 beside. Logs under $OUT; about 280 s.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
timeout 200 python3 -m pytest -q -p no:cacheprovider -n 8 tests/test_gpu_bwd_sm90.py tests/test_gpu_mods_sm90.py \
  -k "(test_backward and dtype0) or test_window or test_split_tail or test_gqa or test_wide_heads or test_deterministic or test_sink or (backward and not test_backward_of)" \
  > $OUT/tests.log 2>&1; tail -2 $OUT/tests.log
TAG=plain timeout 150 bash scripts/compare_trees.sh "--direction bwd --hdims 64,128 --seqlens 1k,4k --causal 1,0 --rounds 3 --variants default="
TAG=window timeout 80 bash scripts/compare_trees.sh "--direction bwd --hdims 128 --seqlens 4k --causal 1 --variant sliding_window --rounds 3 --variants default="
