# The backward's dV GEMM after dS^T at hdim 128 (BwdConfig.dv_after_ds, 7343f6f, reverted in 4cff03d): its GPU
# tests, then timed against the default in one process, 3 rounds a cell after 500 ms of warm-up each, FA4 beside.
# Apply it first, uncommitted:
#   git revert --no-commit 4cff03d
# Logs under $OUT; about 200 s.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
python3 -c "from cuteattn.sm90.bwd_kernel import BwdConfig; BwdConfig(dv_after_ds=True)" || exit 1
timeout 100 python3 -m pytest -q -p no:cacheprovider -n 8 tests/test_gpu_bwd_sm90.py -k "dv_after" > $OUT/tests.log 2>&1
tail -2 $OUT/tests.log
timeout 150 python3 -u benchmarks/sweep_sm90.py --direction bwd --hdims 128 --seqlens 1k,4k,16k --causal 1,0 \
  --rounds 3 --warmup-ms 500 --variants default= dvlate=dv_after_ds:True 2>&1 \
  | grep -v "Warning\|exe_args\|_warn_once" > $OUT/sweep.log
grep -E "^\|" $OUT/sweep.log
