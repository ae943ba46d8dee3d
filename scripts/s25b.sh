# Next session's forward call (carry .gpu): the claimed grid under the features and mods whose default is still
# one CTA per tile (tests, then sweeps against FA4), and the claimed grid against one CTA a tile at hdim 128
# 16k plain, where it loses (notes-19); then s25c.sh. Logs under $OUT.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
date +%s > $OUT/t0
CUTEATTN_TEST_HANG_SECONDS=90 timeout 150 python3 -m pytest tests/test_gpu_fwd_sm90.py tests/test_gpu_mods_sm90.py -k "claimed_tiles" -q -n 8 -rf --tb=line -p no:cacheprovider > $OUT/tests.log 2>&1; echo "rc $?" >> $OUT/tests.log; tail -4 $OUT/tests.log; date +%s >> $OUT/t0
for variant in window document rel_bias; do timeout 100 python3 -u benchmarks/sweep_sm90.py --variant $variant --hdims 128 --seqlens 1k,16k --causal 1 --rounds 3 --variants default= dyn=persistent:True,dynamic:True 2>&1 | grep -v -i "warn\|exe_args" > $OUT/sweep-$variant.log; grep "^fwd" $OUT/sweep-$variant.log; done; date +%s >> $OUT/t0
timeout 90 python3 -u benchmarks/sweep_sm90.py --hdims 128 --seqlens 16k --causal 0 --rounds 5 --variants default= dyn=persistent:True,dynamic:True 2>&1 | grep "^fwd" > $OUT/sweep-16k.log; cat $OUT/sweep-16k.log; date +%s >> $OUT/t0
