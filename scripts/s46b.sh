# Session 35, for the next session with a GPU, after `git revert --no-commit 83b63cf` (the BwdConfig fields). (1)
# GPU tests of BwdConfig.late_dq (hdim 128, and hdim 64 at tile_m 128 by rows), prefetch_stats (hdim 128; with
# dv_under_fence at tile_m 80, and hdim 64); (2) the hdim 128 backward, those variants against the default and FA4,
# 3 rounds after 500 ms. About 560 s; each part has its own limit.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
timeout 250 python3 -m pytest -q tests/test_gpu_bwd_sm90.py -k "test_config_variants and (late_dq or prefetch)" \
  > $OUT/tests.log 2>&1
tail -n 3 $OUT/tests.log
timeout 290 python3 -u benchmarks/sweep_sm90.py --direction bwd --rounds 3 --warmup-ms 500 --seqlens 1k,4k,16k \
  --hdims 128 --variants default= late=late_dq:True,overlap_dq:False pre=prefetch_stats:True \
  p80f=tile_m:80,prefetch_stats:True,dv_under_fence:True 2>&1 | grep -v "Warning\|exe_args" > $OUT/sweep128.log
tail -n 8 $OUT/sweep128.log
