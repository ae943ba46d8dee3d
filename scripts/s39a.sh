# Two backward variants: the rotated query order (BwdConfig.rotate) and a third Q stage (q_stages 3, hdim 128).
# Their GPU tests (config variants), then the backward at hdim 64 and 128, 1k/4k/16k, causal and not, default
# against rotate, and at hdim 128 4k/16k default against q_stages 3 (with and without rotate); FA4 in each process,
# 3 rounds after 500 ms of warm-up. About 500 s.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
timeout 200 python3 -m pytest tests/test_gpu_bwd_sm90.py::test_config_variants -q -x -k "rotate or q_stages" 2>&1 \
  | tail -3 | tee $OUT/tests.log
grep -q " passed" $OUT/tests.log || exit 3
sweep() { t=$1; shift; timeout $t python3 -u benchmarks/sweep_sm90.py --direction bwd --causal 0,1 --rounds 3 --warmup-ms 500 "$@" 2>&1 \
  | grep -v "Warning\|exe_args"; }
sweep 190 --hdims 64,128 --seqlens 1k,4k,16k --variants default= rot=rotate:True > $OUT/rotate.log
tail -13 $OUT/rotate.log
sweep 100 --hdims 128 --seqlens 4k,16k --variants default= q3=q_stages:3 rotq3=q_stages:3,rotate:True \
  > $OUT/q3.log
tail -5 $OUT/q3.log
