# Session 40 (notes-40), for a session with a GPU: BwdConfig.dq_lag, timed. Its GPU tests passed on the H100 in
# session 40 (60 config variants). Bring it back with `git revert --no-edit 66a15dd`, carry [".gpu"]. The backward
# at hdim 128, 1k/4k/16k, causal and not: the default, 64 query rows without and with the lag; at 16k, 80 rows with
# one dO stage without and with it; hdim 64 at 1k and 16k, 64 rows and 128 with one dO stage, without and with it.
# FA4 in the same run. About 450 s.
sweep_s=${1:-210} lag80_s=${2:-90} hdim64_s=${3:-150}; set --
source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
rows64=tile_m:64,prefetch_stats:False,dv_under_fence:False,dq_by_rows:False
timeout "$sweep_s" python3 benchmarks/sweep_sm90.py --direction bwd --hdims 128 --seqlens 1k,4k,16k --causal 0,1 \
  --rounds 3 --warmup-ms 300 --variants default= m64=$rows64 lag=$rows64,dq_lag:True 2>&1 \
  | tee $OUT/lag_sweep.log | grep -E "^\|"
timeout "$lag80_s" python3 benchmarks/sweep_sm90.py --direction bwd --hdims 128 --seqlens 16k --causal 0 --rounds 3 \
  --warmup-ms 300 --variants default= do1=do_stages:1 lag80=do_stages:1,dq_lag:True 2>&1 \
  | tee $OUT/lag80_sweep.log | grep -E "^\|"
timeout "$hdim64_s" python3 benchmarks/sweep_sm90.py --direction bwd --hdims 64 --seqlens 1k,16k --causal 0,1 \
  --rounds 3 --warmup-ms 300 --variants default= m64=$rows64 lag=$rows64,dq_lag:True do1=do_stages:1 \
  lag128=do_stages:1,dq_lag:True 2>&1 | tee $OUT/lag64_sweep.log | grep -E "^\|"
