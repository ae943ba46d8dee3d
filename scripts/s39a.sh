# Two backward variants at hdim 128: the rotated query order (BwdConfig.rotate) and a third Q stage (q_stages 3).
# Their GPU tests (config variants), then the backward at 4k and 16k, causal and not: default against rot, q3 and
# both, FA4 in the same process, 3 rounds after 500 ms of warm-up. About 250 s.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
timeout 130 python3 -m pytest tests/test_gpu_bwd_sm90.py::test_config_variants -q -x -k "(rotate or q_stages) and not dq_by_rows" \
  2>&1 | tail -3 | tee $OUT/tests.log
grep -q " passed" $OUT/tests.log || exit 3
timeout 150 python3 -u benchmarks/sweep_sm90.py --direction bwd --causal 0,1 --rounds 3 --warmup-ms 500 --hdims 128 \
  --seqlens 4k,16k --variants default= rot=rotate:True q3=q_stages:3 rotq3=q_stages:3,rotate:True 2>&1 \
  | grep -v "Warning\|exe_args" > $OUT/variants.log
tail -6 $OUT/variants.log
