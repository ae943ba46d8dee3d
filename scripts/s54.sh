# Session 39, the call after s53 (notes-39), on the same tree and trees, plus each change alone:
#   mkdir -p _trees/workspace _trees/order && git archive c776e9c cuteattn | tar -x -C _trees/workspace
#   git archive 9f97711 cuteattn | tar -x -C _trees/order
# carry [".gpu", "_trees"]. compute-sanitizer racecheck and memcheck on scripts/sanitize_cases.py (the checkout),
# then which change gives what: hdim 128 at 1k/4k, causal and not, every tree, FA4 in the same run. About 450 s.
compare_s=${1:-340}; set --
source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
for tool in racecheck memcheck; do
  compute-sanitizer --tool $tool --report-api-errors no --error-exitcode 9 python3 scripts/sanitize_cases.py \
    > "$OUT/sanitizer-$tool.log" 2>&1
  echo "compute-sanitizer $tool: exit $?"
  grep -E "ERROR SUMMARY|RACECHECK SUMMARY|hazard" "$OUT/sanitizer-$tool.log" | head -3
done
timeout "$compare_s" bash scripts/compare_trees.sh "--direction bwd --hdims 128 --seqlens 1k,4k \
  --causal 0,1 --rounds 3 --warmup-ms 300 --variants default=" 2>&1 | tee $OUT/compare.log
