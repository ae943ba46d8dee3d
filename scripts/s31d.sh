# The backward's masks by one threshold a tile (ae3cdb0): its GPU tests (backward and mods, then the forward's
# windows at hdim 128, whose mask_tile now shares the edges), and the windowed and causal backward against the
# tree before it, 3 rounds in one process each. Export that tree first and carry [".gpu", "_trees"]:
#   mkdir -p _trees/before && git archive ad3ae5e cuteattn | tar -x -C _trees/before
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
timeout 260 python3 -m pytest tests/test_gpu_bwd_sm90.py tests/test_gpu_mods_sm90.py -q -n 8 -p no:cacheprovider > $OUT/tests_bwd_mods.log 2>&1; tail -2 $OUT/tests_bwd_mods.log
timeout 100 python3 -m pytest tests/test_gpu_fwd_sm90.py -k "window and 128 and not 192" -q -n 8 -p no:cacheprovider > $OUT/tests_fwd_window.log 2>&1; tail -2 $OUT/tests_fwd_window.log
timeout 120 bash scripts/compare_trees.sh "--direction bwd --hdims 128 --seqlens 4k,16k --causal 1 --variant sliding_window --rounds 3 --variants default="
timeout 100 bash scripts/compare_trees.sh "--direction bwd --hdims 128 --seqlens 1k,4k --causal 1 --rounds 3 --variants default="
