# The rotated query order (BwdConfig.rotate): its GPU tests (config variants with rotate), then the backward at
# hdim 64 and 128, 1k/4k/16k, causal and not, default against rotate and FA4 in one process, 3 rounds after
# 500 ms of warm-up. About 400 s.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
timeout 200 python3 -m pytest tests/test_gpu_bwd_sm90.py::test_config_variants -q -x -k "rotate" 2>&1 \
  | tail -3 | tee $OUT/tests.log
grep -q " passed" $OUT/tests.log || exit 3
timeout 260 python3 -u benchmarks/sweep_sm90.py --direction bwd --hdims 64,128 --seqlens 1k,4k,16k --causal 0,1 \
  --variants default= rot=rotate:True --rounds 3 --warmup-ms 500 2>&1 | grep -v "Warning\|exe_args" \
  > $OUT/rotate.log
tail -16 $OUT/rotate.log
