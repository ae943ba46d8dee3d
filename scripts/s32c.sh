# The host time of a call split into the CPU's issue time and the GPU's (host_overhead.py), then the grid of
# issues 3 and 4 at 5 rounds a cell (bench.py --rounds: the providers in alternating order, the median), cuteattn,
# FA4 and cuDNN in one process, each line stamped with the time and the GPU's clocks, power and temperature logged
# every half second beside it (s32b's 2 rounds had one slow round in 16k cells, 8-15%). Logs under $OUT; ~300 s.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
python3 benchmarks/host_overhead.py 2>&1 | grep -v "Warning\|exe_args" > $OUT/host.log; cat $OUT/host.log
nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu,clocks_throttle_reasons.active \
  --format=csv -lms 500 > $OUT/smi.csv &
stamp='import sys, time
for line in sys.stdin: print(time.strftime("%H:%M:%S"), line, end="", flush=True)'
timeout 400 python3 -u benchmarks/bench.py --providers cuteattn,fa4,sdpa-cudnn --rounds 5 --out $OUT 2>&1 \
  | grep -v "Warning\|exe_args" | python3 -u -c "$stamp" > $OUT/bench.log; tail -26 $OUT/bench.log
kill %1
