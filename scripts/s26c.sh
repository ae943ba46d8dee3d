# Session 20's third call (carry .gpu): issue 5's backward with the window and the documents, cuteattn and FA4 in
# one process per mod (hdim 128, causal, 4k and 16k). Logs under $OUT.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
date +%s > $OUT/t0
for variant in ${VARIANTS:-document sliding_window}; do
  timeout ${LIMIT:-100} python3 -u benchmarks/bench.py --variant $variant --directions bwd --hdims 128 --causal 1 --seqlens 4k,16k --providers cuteattn,fa4 --out $OUT/$variant 2>&1 | grep -v "Warning\|exe_args" > $OUT/bench-$variant.log; grep "TFLOP/s$" $OUT/bench-$variant.log; date +%s >> $OUT/t0
done
