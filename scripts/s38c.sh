# The least of s38a, for a call with little device time: the quick check, then the backward at hdim 128, 1k and
# 4k, causal and not, in-kernel conversion against the postprocess and FA4 (3 rounds, 500 ms warm-up). About 150 s.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
timeout 70 python3 -m pytest tests/test_gpu_bwd_sm90.py -q -x -k "test_backward and bfloat16 and 128" 2>&1 \
  | tail -3 | tee $OUT/smoke.log
grep -q " passed" $OUT/smoke.log || exit 3
timeout 110 python3 -u benchmarks/sweep_sm90.py --direction bwd --hdims 128 --seqlens 1k,4k --causal 0,1 \
  --variants default= post=convert_dq:False --rounds 3 --warmup-ms 500 2>&1 | grep -v "Warning\|exe_args" \
  > $OUT/convert.log
tail -8 $OUT/convert.log
