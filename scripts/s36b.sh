# Config variants at settled clocks (3 rounds after 1000 ms of warm-up, FA4 in each): the hdim 128 backward at 80
# query rows a step against 64 (16k, causal and not; FA4's non-causal step is 80 rows), and the hdim 64 forward at
# 16k plain (behind FA4 in notes-28) over its persistent grid, two consumers and three stages; then the 80-row
# backward's GPU tests. About 330 s.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
timeout 150 python3 -u benchmarks/sweep_sm90.py --direction bwd --hdims 128 --seqlens 16k --causal 0,1 \
  --variants default= m80=tile_m:80 --rounds 3 --warmup-ms 1000 2>&1 | grep -v "Warning\|exe_args" > $OUT/m80.log
tail -4 $OUT/m80.log
timeout 120 python3 -u benchmarks/sweep_sm90.py --direction fwd --hdims 64 --seqlens 16k --causal 0 \
  --variants default= claimed=persistent:True,dynamic:True two=num_consumers:2 stages3=num_stages:3 --rounds 3 \
  --warmup-ms 1000 2>&1 | grep -v "Warning\|exe_args" > $OUT/fwd64.log
tail -3 $OUT/fwd64.log
timeout 60 python3 -m pytest tests/test_gpu_bwd_sm90.py -q -n 8 -p no:cacheprovider -k "config_variants and tile_m80" \
  > $OUT/m80-tests.log 2>&1
echo "80-row tests: $(tail -1 $OUT/m80-tests.log)"
