# Session 20's first call (carry .gpu, _trees/main): the forward's features and mods on the claimed grid by default
# (GPU tests), hdim 64 and 96 under features against one CTA a tile, and host time per call against main's tree.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
date +%s > $OUT/t0
CUTEATTN_TEST_HANG_SECONDS=90 timeout 260 python3 -m pytest tests/test_gpu_fwd_sm90.py tests/test_gpu_mods_sm90.py -k "not backward and not deterministic and not config_variants" -q -n 12 -rf --tb=line -p no:cacheprovider > $OUT/tests.log 2>&1; echo "rc $?" >> $OUT/tests.log; tail -4 $OUT/tests.log; date +%s >> $OUT/t0
for hdim in 64 96; do for variant in window document rel_bias; do timeout 75 python3 -u benchmarks/sweep_sm90.py --variant $variant --hdims $hdim --seqlens 1k,16k --causal 1 --rounds 3 --variants single=persistent:False,dynamic:False default= 2>&1 | grep "^fwd" >> $OUT/sweep-features.log; done; done; cat $OUT/sweep-features.log; date +%s >> $OUT/t0
for tree in new main; do
  [ $tree = main ] && { rm -rf cuteattn && cp -r _trees/main/cuteattn .; }
  timeout 60 python3 benchmarks/host_overhead.py 2>&1 | grep -v "Warning\|exe_args" | sed "s/^/$tree /" > $OUT/host-$tree.log; cat $OUT/host-$tree.log
done; date +%s >> $OUT/t0
