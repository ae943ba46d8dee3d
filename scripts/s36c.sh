# The backward's lse and dpsum loads behind its S and dP GEMMs' first wgmma (02214d9, reverted in 1aae243), against
# the checkout, at settled clocks (3 rounds after 1000 ms of warm-up, FA4 in each): hdim 128, 4k and 16k, causal and
# not; then the backward's GPU tests on that tree. Export it first and carry [".gpu", "_trees"]:
#   rm -rf _trees/* && mkdir -p _trees/lse_after && git archive 02214d9 cuteattn | tar -x -C _trees/lse_after
# About 320 s.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
timeout 200 bash scripts/compare_trees.sh "--direction bwd --hdims 128 --seqlens 4k,16k --causal 0,1 \
  --variants default= --rounds 3 --warmup-ms 1000"
rm -rf cuteattn && cp -r _trees/lse_after/cuteattn .
timeout 180 python3 -m pytest tests/test_gpu_bwd_sm90.py -q -n 8 -p no:cacheprovider > $OUT/lse_after-tests.log 2>&1
echo "lse_after tests: $(tail -1 $OUT/lse_after-tests.log)"
