# Session 35. (1) GPU tests of BwdConfig.late_dq (hdim 128, and hdim 64 at tile_m 128 by rows); (2) the backward,
# late_dq against the default and FA4 at hdims 128 and 64, 3 rounds after 500 ms; (3) the forward at 16k plain
# (scripts/s46a.sh: one CTA a tile against the claimed grid and FA4), 5 rounds after 1000 ms. About 560 s; each
# part has its own limit, the last is cut first.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
timeout 140 python3 -m pytest -q -x tests/test_gpu_bwd_sm90.py -k "test_config_variants and late_dq" \
  > $OUT/tests.log 2>&1
tail -n 3 $OUT/tests.log
S="python3 -u benchmarks/sweep_sm90.py --direction bwd --rounds 3 --warmup-ms 500 --seqlens 1k,4k,16k"
timeout 150 $S --hdims 128 --variants default= late=late_dq:True,overlap_dq:False 2>&1 \
  | grep -v "Warning\|exe_args" > $OUT/sweep128.log
tail -n 8 $OUT/sweep128.log
timeout 130 $S --hdims 64 --variants default= late=late_dq:True,overlap_dq:False 2>&1 \
  | grep -v "Warning\|exe_args" > $OUT/sweep64.log
tail -n 8 $OUT/sweep64.log
timeout 130 python3 -u benchmarks/sweep_sm90.py --direction fwd --hdims 64,128 --seqlens 16k --causal 0 --rounds 5 \
  --warmup-ms 1000 --variants default= claimed=persistent:True,dynamic:True 2>&1 | grep -v "Warning\|exe_args" \
  > $OUT/fwd16k.log
tail -n 5 $OUT/fwd16k.log
