# Session 20's second call (carry .gpu), after s26a.sh: issue 5's forward table with the features' claimed grid,
# cuteattn, FA4 and flex in one process per mod (hdim 128, 4k and 16k). Logs and tables under $OUT.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
date +%s > $OUT/t0
for variant in document sliding_window rel_bias; do
  causal=1; [ $variant = rel_bias ] && causal=0,1
  timeout 120 python3 -u benchmarks/bench.py --variant $variant --directions fwd --hdims 128 --causal $causal --seqlens 4k,16k --providers cuteattn,fa4,flex --out $OUT/$variant 2>&1 | grep -v "Warning\|exe_args" > $OUT/bench-$variant.log; grep "TFLOP/s$" $OUT/bench-$variant.log; date +%s >> $OUT/t0
done
