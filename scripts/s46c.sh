# Session 35, for the next session with a GPU, after `git revert --no-commit 83b63cf` (the BwdConfig fields). (1)
# The hdim 64 backward, BwdConfig.late_dq and prefetch_stats with dv_under_fence against the default and FA4, 3
# rounds after 500 ms; (2) the forward at 16k plain (one CTA a tile, the default there, against the claimed grid and
# FA4), hdims 64 and 128, 5 rounds after 1000 ms. About 320 s.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
timeout 180 python3 -u benchmarks/sweep_sm90.py --direction bwd --rounds 3 --warmup-ms 500 --seqlens 1k,4k,16k \
  --hdims 64 --variants default= late=late_dq:True,overlap_dq:False pf=prefetch_stats:True,dv_under_fence:True \
  2>&1 | grep -v "Warning\|exe_args" > $OUT/sweep64.log
tail -n 8 $OUT/sweep64.log
timeout 130 python3 -u benchmarks/sweep_sm90.py --direction fwd --hdims 64,128 --seqlens 16k --causal 0 --rounds 5 \
  --warmup-ms 1000 --variants default= claimed=persistent:True,dynamic:True 2>&1 | grep -v "Warning\|exe_args" \
  > $OUT/fwd16k.log
tail -n 5 $OUT/fwd16k.log
