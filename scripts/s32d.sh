# hdim 128 16k plain, where s32c's grid put cuteattn 8% under FA4 forward (notes-26: 5% over) while the GPU held
# its 700 W cap at 1.4-1.98 GHz: bench.py (the API, split tail) at rep 100 ms and at rep 1000 ms (the clocks
# settled), 5 rounds, forward and backward; the sweep's one CTA a tile without the tail and the claimed grid; each
# kernel's GPU time a call (profile_one --kernels), both providers. GPU clocks logged beside. Logs under $OUT; ~200 s.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu,clocks_throttle_reasons.active \
  --format=csv -lms 250 > $OUT/smi.csv &
stamp='import sys, time
for line in sys.stdin: print(time.strftime("%H:%M:%S"), line, end="", flush=True)'
quiet() { grep --line-buffered -v "Warning\|exe_args" | python3 -u -c "$stamp"; }
for rep in 100 1000; do
  python3 -u benchmarks/bench.py --hdims 128 --seqlens 16k --causal 0 --providers cuteattn,fa4 --rounds 5 \
    --rep-ms $rep --out $OUT/rep$rep 2>&1 | quiet | grep "ms " | tee -a $OUT/bench.log
done
python3 -u benchmarks/sweep_sm90.py --hdims 128 --seqlens 16k --causal 0 --rounds 5 \
  --variants default= claimed=persistent:True,dynamic:True 2>&1 | quiet | tee $OUT/sweep.log | grep -E "TFLOP|\{"
for p in cuteattn fa4; do
  python3 benchmarks/profile_one.py --provider $p --hdim 128 --seqlen 16k --kernels 2>&1 | grep -v "Warning\|exe_args"
done | tee $OUT/kernels.log
kill %1
