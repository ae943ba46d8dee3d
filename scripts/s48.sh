# Session 37: the lean step's order over 64 rows (BwdConfig.lean_64, FA4's order at 64 rows) against the default
# and FA4, causal hdim 128 backward, 3 rounds after 500 ms (its GPU tests run in s47's test file). About 200 s.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
timeout 280 python3 benchmarks/sweep_sm90.py --direction bwd --hdims 128 --causal 1 --seqlens 1k,4k,16k \
  --rounds 3 --warmup-ms 500 --variants default= l64=lean_64:True \
  l64pf=lean_64:True,prefetch_stats:True,dv_under_fence:True 2>&1 | grep -v -i warning > $OUT/sweep-lean64.log
tail -n 8 $OUT/sweep-lean64.log
