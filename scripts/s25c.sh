# Next session's second forward call (carry .gpu), after s25b.sh: host time per call with the claimed grid's
# per-call counter lookup, hdim 64 plain over 192-key blocks, and ncu of the claimed grid against one CTA a tile at
# hdim 128 16k plain. Logs under $OUT.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
date +%s > $OUT/t0
# hdim 64 plain: two consumers over 192 keys (570 instructions a step, 3.0 a key against three consumers' 3.4)
timeout 150 python3 -u benchmarks/sweep_sm90.py --hdims 64 --seqlens 4k,16k --causal 0 --rounds 3 --variants default= two192=num_consumers:2,tile_n:192 two192c=num_consumers:2,tile_n:192,persistent:True,dynamic:True 2>&1 | grep "^fwd" > $OUT/sweep-64.log; cat $OUT/sweep-64.log; date +%s >> $OUT/t0
# host time per call with the claimed grid's per-call counter lookup (hdim 64 causal is claimed now), first calls
timeout 120 python3 benchmarks/host_overhead.py 2>&1 | grep -v Warning > $OUT/host_overhead.log; cat $OUT/host_overhead.log; date +%s >> $OUT/t0
# ncu of hdim 128 16k plain: one CTA a tile against the claimed grid (why the latter loses there)
for variant in single=persistent:False,dynamic:False claimed=persistent:True,dynamic:True; do name=${variant%%=*}
  timeout 120 ncu --clock-control none -k "regex:FlashFwd" --launch-skip 2 --launch-count 1 --set full --import-source no \
    -o /tmp/ncu_$name -f python3 benchmarks/profile_one.py --hdim 128 --seqlen 16k --config "${variant#*=}" > $OUT/ncu_$name.run.log 2>&1
  ncu --import /tmp/ncu_$name.ncu-rep --page details > $OUT/ncu_$name.details.txt 2>&1
  grep -E "^\s+(Duration|SM Frequency|Executed Ipc Active|L1/TEX Hit Rate|L2 Hit Rate|Shared Memory Configuration Size|DRAM Throughput|Compute \(SM\) Throughput)" $OUT/ncu_$name.details.txt | sed "s/^/$name /"
done; date +%s >> $OUT/t0
