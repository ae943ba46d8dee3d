# The backward under the masks of ae3cdb0 through flash_attn_func (bench.py), cuteattn and FA4 in one process,
# 3 rounds a cell in alternating order: the causal sliding window of 1024 and the documents of 4096 (issue 5), then
# the causal grid cells at hdims 64 and 128, 2 rounds (issue 4). Logs under $OUT; about 250 s.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
for v in sliding_window document; do
  timeout 110 python3 -u benchmarks/bench.py --variant $v --directions bwd --hdims 128 --seqlens 4k,16k --causal 1 \
    --providers cuteattn,fa4 --rounds 3 --out $OUT/$v 2>&1 | grep -v "Warning\|exe_args" > $OUT/$v.log
  tail -2 $OUT/$v.log
done
timeout 140 python3 -u benchmarks/bench.py --directions bwd --causal 1 --providers cuteattn,fa4 --rounds 2 \
  --out $OUT/causal 2>&1 | grep -v "Warning\|exe_args" > $OUT/causal.log; tail -6 $OUT/causal.log
