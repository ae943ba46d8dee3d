# Sessions 39-40, for the next session with a GPU (notes-39, -40). On this machine first bring back both untested
# changes (session 40 moved them onto the split kernel modules):
#   git revert --no-edit 6e3d43f 0c13cb2 602c636   (the dQ workspace unzeroed; the launch order)
#   mkdir -p _trees/plain && git archive 774844c cuteattn | tar -x -C _trees/plain
# and call the device with carry [".gpu", "_trees"], timeout_s 600. This times the checkout (both changes) against
# the plain tree at hdim 128, 1k/4k/16k, causal and not, FA4 in the same run, then runs the backward's GPU tests on
# the checkout (its preprocess and main kernels; arguments: the comparison's and the tests' time limits). About
# 570 s.
compare_s=${1:-230} tests_s=${2:-330}; set --
source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
timeout "$compare_s" bash scripts/compare_trees.sh "--direction bwd --hdims 128 --seqlens 1k,4k,16k \
  --causal 0,1 --rounds 3 --warmup-ms 300 --variants default=" 2>&1 | tee $OUT/compare.log
timeout "$tests_s" python3 -m pytest tests/test_gpu_bwd_preprocess.py tests/test_gpu_bwd_sm90.py -q -n 12 \
  -p no:cacheprovider > $OUT/bwd_tests.log 2>&1
tail -3 $OUT/bwd_tests.log
