# Two backward changes prepared without a GPU, tested and timed together against the tree before:
# BwdConfig.dv_after_ds (7343f6f, reverted in 4cff03d: the dV GEMM after dS^T, a config variant) and the steps
# without division at one query head a KV head (e4705cf, reverted in a6c37d7: the default for every call).
# First, uncommitted:  git revert --no-commit 4cff03d a6c37d7
#                      rm -rf _trees/* && mkdir -p _trees/main && git archive HEAD cuteattn | tar -x -C _trees/main
# and carry [".gpu", "_trees"]. The tree before has no dv_after_ds: its sweep reports that variant as an error.
# Logs under $OUT; about 460 s.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
python3 -c "from cuteattn.sm90.bwd_kernel import BwdConfig; BwdConfig(dv_after_ds=True)" || exit 1
tests="(test_backward and dtype0) or test_window or test_split_tail or test_gqa or test_deterministic or dv_after"
timeout 280 python3 -m pytest -q -p no:cacheprovider -n 8 tests/test_gpu_bwd_sm90.py tests/test_gpu_mods_sm90.py \
  -k "$tests or (backward and not test_backward_of)" > $OUT/tests.log 2>&1
tail -2 $OUT/tests.log; grep -E "^FAILED" $OUT/tests.log | head
sweep="--direction bwd --hdims 64,128 --seqlens 1k,4k --causal 1,0 --rounds 3 --warmup-ms 300"
TAG=bwd timeout 160 bash scripts/compare_trees.sh "$sweep --variants default= dvlate=dv_after_ds:True"
