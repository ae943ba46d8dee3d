# The grid at settled clocks (notes-28, next 4): hdim 64 and 128, 1k/4k/16k, causal and not, cuteattn, FA4 and
# cuDNN in one process, 3 rounds a cell after 1000 ms of warm-up; the forward, then the backward. About 500 s.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
for d in fwd bwd; do
  timeout 290 python3 -u benchmarks/bench.py --directions $d --providers cuteattn,fa4,sdpa-cudnn --rounds 3 \
    --warmup-ms 1000 --out $OUT/$d 2>&1 | grep -v "Warning\|exe_args" > $OUT/$d.log
  tail -16 $OUT/$d.log
done
nvidia-smi --query-gpu=name,clocks.sm,power.draw,temperature.gpu --format=csv
