# Session 37: the lean step's order over 64 rows (BwdConfig.lean_64, FA4's order at 64 rows) for the causal hdim 128
# backward. (1) its GPU tests (test_config_variants -k lean_64); (2) the causal sweep at hdim 128 against FA4,
# 3 rounds after 500 ms. About 300 s.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
timeout 200 python3 -m pytest -q -rf -n 8 tests/test_gpu_bwd_sm90.py -k "test_config_variants and lean_64" \
  > $OUT/tests-lean64.log 2>&1
tail -n 3 $OUT/tests-lean64.log
timeout 250 python3 benchmarks/sweep_sm90.py --direction bwd --hdims 128 --causal 1 --seqlens 1k,4k,16k \
  --rounds 3 --warmup-ms 500 --variants default= l64=lean_64:True \
  l64pf=lean_64:True,prefetch_stats:True,dv_under_fence:True 2>&1 | grep -v -i warning > $OUT/sweep-lean64.log
tail -n 8 $OUT/sweep-lean64.log
