# Masks that AND a band with other terms (b7a8524, reverted in 44b6d44): the window and a mask_mod of the other
# terms, block lists that flag the tiles the mask_mod cuts. Its GPU tests (the mods suite), then causal documents
# of 4096 forward and backward, hdim 128, 4k and 16k, against the tree before in one call (3 rounds, FA4 beside).
# First, uncommitted:  git revert --no-commit 44b6d44
#                      rm -rf _trees/* && mkdir -p _trees/main && git archive HEAD cuteattn | tar -x -C _trees/main
# and carry [".gpu", "_trees"]. Logs under $OUT; about 320 s.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
python3 -c "from cuteattn.mods.band import band_split" || exit 1
timeout 180 python3 -m pytest -q -p no:cacheprovider -n 8 tests/test_gpu_mods_sm90.py > $OUT/tests.log 2>&1
tail -2 $OUT/tests.log; grep -E "^FAILED" $OUT/tests.log | head
for d in fwd bwd; do
  TAG=$d timeout 70 bash scripts/compare_trees.sh \
    "--direction $d --hdims 128 --seqlens 4k,16k --causal 1 --variant document --rounds 3 --variants default="
done
