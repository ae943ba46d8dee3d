# Next session: the deferred O-store wait (commit 78fc75c, reverted next) against main, in one call (carry .gpu,
# _trees/defer). First: mkdir -p _trees/defer && git archive 78fc75c cuteattn | tar -x -C _trees/defer
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
date +%s > $OUT/t0
rm -rf /tmp/main_pkg && cp -r cuteattn /tmp/main_pkg && rm -rf cuteattn && cp -r _trees/defer/cuteattn .
CUTEATTN_TEST_HANG_SECONDS=90 timeout 150 python3 -m pytest tests/test_gpu_fwd_sm90.py -k "persistent_ctas or claimed_tiles or counter" -q -n 15 -rf --tb=line -p no:cacheprovider > $OUT/tests.log 2>&1; echo "rc $?" >> $OUT/tests.log; tail -3 $OUT/tests.log
for tree in defer main; do
  [ $tree = main ] && { rm -rf cuteattn && cp -r /tmp/main_pkg cuteattn; }
  timeout 120 python3 -u benchmarks/sweep_sm90.py --hdims 128,64 --seqlens 1k,4k --causal 0,1 --rounds 3 --variants default= 2>&1 | grep "^fwd" | sed "s/^/$tree /" > $OUT/sweep-$tree.log; cat $OUT/sweep-$tree.log
done; date +%s >> $OUT/t0
