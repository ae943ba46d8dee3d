# Sessions 39-40 (notes-40): the unzeroed workspace and the causal launch order, together, lost on the H100 (causal
# 16k 525 TFLOP/s against 581); which one loses what. Export each alone beside the plain tree (main's checkout):
#   mkdir -p _trees/plain _trees/workspace _trees/order && git archive 774844c cuteattn | tar -x -C _trees/plain
#   git archive a48f3fc cuteattn | tar -x -C _trees/workspace && git archive 42e9438 cuteattn | tar -x -C _trees/order
# carry [".gpu", "_trees"]. hdim 128 at 1k/4k, causal and not, the checkout and every tree, FA4 in the same run.
# About 350 s.
compare_s=${1:-360}; set --
source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
timeout "$compare_s" bash scripts/compare_trees.sh "--direction bwd --hdims 128 --seqlens 1k,16k \
  --causal 0,1 --rounds 3 --warmup-ms 300 --variants default=" 2>&1 | tee $OUT/compare.log
