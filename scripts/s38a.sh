# Needs the in-kernel dQ conversion restored first (`git revert e19e0b6`; notes-31). A quick hang/correctness
# check, then the backward at hdim 64 and 128, 1k/4k/16k, causal and not: in-kernel conversion (the default)
# against the postprocess (convert_dq False) and FA4 in one process, 3 rounds after 500 ms of warm-up. About 420 s.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
test -f cuteattn/sm90/dq_convert.py || { echo "restore dq_convert first: git revert e19e0b6"; exit 2; }
timeout 150 python3 -m pytest tests/test_gpu_bwd_sm90.py::test_backward -q -x -k "128 and 1000" 2>&1 \
  | tail -3 | tee $OUT/smoke.log
grep -q " passed" $OUT/smoke.log || exit 3
timeout 280 python3 -u benchmarks/sweep_sm90.py --direction bwd --hdims 64,128 --seqlens 1k,4k,16k --causal 0,1 \
  --variants default= post=convert_dq:False --rounds 3 --warmup-ms 500 2>&1 | grep -v "Warning\|exe_args" \
  > $OUT/convert.log
tail -16 $OUT/convert.log
