# Next session's forward call (carry .gpu): the claimed grid under the features and mods whose default is still
# one CTA per tile (tests, then sweeps against FA4), and the claimed grid against one CTA a tile at hdim 128
# 16k plain, where it loses (notes-19); host time per call. Logs under $OUT.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
date +%s > $OUT/t0
CUTEATTN_TEST_HANG_SECONDS=90 timeout 150 python3 -m pytest tests/test_gpu_fwd_sm90.py tests/test_gpu_mods_sm90.py -k "claimed_tiles" -q -n 8 -rf --tb=line -p no:cacheprovider > $OUT/tests.log 2>&1; echo "rc $?" >> $OUT/tests.log; tail -4 $OUT/tests.log; date +%s >> $OUT/t0
for variant in window document rel_bias; do timeout 100 python3 -u benchmarks/sweep_sm90.py --variant $variant --hdims 128 --seqlens 1k,16k --causal 1 --rounds 3 --variants default= dyn=persistent:True,dynamic:True 2>&1 | grep -v -i "warn\|exe_args" > $OUT/sweep-$variant.log; grep "^fwd" $OUT/sweep-$variant.log; done; date +%s >> $OUT/t0
timeout 90 python3 -u benchmarks/sweep_sm90.py --hdims 128 --seqlens 16k --causal 0 --rounds 5 --variants default= dyn=persistent:True,dynamic:True 2>&1 | grep "^fwd" > $OUT/sweep-16k.log; cat $OUT/sweep-16k.log; date +%s >> $OUT/t0
# host time per call with the claimed grid's per-call counter lookup (hdim 64 causal is claimed now), first calls
timeout 120 python3 benchmarks/host_overhead.py 2>&1 | grep -v Warning > $OUT/host_overhead.log; cat $OUT/host_overhead.log; date +%s >> $OUT/t0
# ncu of hdim 128 16k plain: one CTA a tile against the claimed grid (why the latter loses there)
for variant in single=persistent:False,dynamic:False claimed=persistent:True,dynamic:True; do name=${variant%%=*}
  timeout 150 ncu --clock-control none -k "regex:FlashFwd" --launch-skip 2 --launch-count 1 --set full --import-source no \
    -o /tmp/ncu_$name -f python3 benchmarks/profile_one.py --hdim 128 --seqlen 16k --config "${variant#*=}" > $OUT/ncu_$name.run.log 2>&1
  ncu --import /tmp/ncu_$name.ncu-rep --page details > $OUT/ncu_$name.details.txt 2>&1
  grep -E "^\s+(Duration|SM Frequency|Executed Ipc Active|L1/TEX Hit Rate|L2 Hit Rate|Shared Memory Configuration Size|DRAM Throughput|Compute \(SM\) Throughput)" $OUT/ncu_$name.details.txt | sed "s/^/$name /"
done; date +%s >> $OUT/t0
