# Session 38: the whole bench.py grid (fwd and bwd, hdims 64 and 128, causal and not, 1k/4k/16k) against FA4 and
# cuDNN, 3 rounds after 300 ms of warm-up each, to refresh README's table with the 80-row default. About 300 s.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
timeout 560 python3 benchmarks/bench.py --providers cuteattn,fa4,sdpa-cudnn --rounds 3 --warmup-ms 300 \
  --out $OUT 2>&1 | grep -v -i warning | tee $OUT/grid.log | tail -30
