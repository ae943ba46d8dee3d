# dQ converted inside the backward (dq_convert): a quick hang/correctness check; the backward at hdim 64 and 128,
# 1k and 4k, causal and not: in-kernel conversion (default) against the postprocess (convert_dq False) and FA4 in
# one process, 3 rounds after 500 ms of warm-up; then the backward's GPU tests. About 450 s.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
timeout 120 python3 -m pytest tests/test_gpu_bwd_sm90.py -q -x -k "test_backward and bfloat16 and 128" 2>&1 \
  | tail -3 | tee $OUT/smoke.log
grep -q " passed" $OUT/smoke.log || exit 3
timeout 140 python3 -u benchmarks/sweep_sm90.py --direction bwd --hdims 64,128 --seqlens 1k,4k --causal 0,1 \
  --variants default= post=convert_dq:False --rounds 3 --warmup-ms 500 2>&1 | grep -v "Warning\|exe_args" \
  > $OUT/convert.log
tail -12 $OUT/convert.log
timeout 120 python3 -m pytest tests/test_gpu_bwd_sm90.py -q -n 8 -rf 2>&1 | tail -15 | tee $OUT/bwd_tests.log
