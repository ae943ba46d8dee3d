# Issue 5's speed cells at settled clocks (notes-28, next 3): hdim 128, 4k and 16k, forward and backward, cuteattn,
# FA4 (its native window, documents as varlen) and FlexAttention in one process, 3 rounds a cell after 1000 ms of
# warm-up: the causal sliding window of 1024, the causal documents of 4096, the relative-position bias table.
# Logs and each run's table under $OUT; about 330 s.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
for v in sliding_window document rel_bias; do
  causal=$([ $v = rel_bias ] && echo 0 || echo 1)
  timeout 140 python3 -u benchmarks/bench.py --variant $v --hdims 128 --seqlens 4k,16k --causal $causal \
    --providers cuteattn,fa4,flex --rounds 3 --warmup-ms 1000 --out $OUT/$v 2>&1 | grep -v "Warning\|exe_args" \
    > $OUT/$v.log
  tail -6 $OUT/$v.log
done
timeout 60 python3 -u benchmarks/block_mask_time.py --seqlen 16k 2>&1 | grep -v "Warning\|exe_args" | tee $OUT/block_mask.log
