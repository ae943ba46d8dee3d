# The backward under the masks of ae3cdb0 through flash_attn_func (bench.py), cuteattn and FA4 in one process, two
# passes: the causal sliding window of 1024 and the documents of 4096 (issue 5), then the causal grid cells at
# hdims 64 and 128 (issue 4). Logs under $OUT; about 300 s.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
for pass in 1 2; do
  for v in sliding_window document; do
    timeout 80 python3 -u benchmarks/bench.py --variant $v --directions bwd --hdims 128 --seqlens 4k,16k --causal 1 \
      --providers cuteattn,fa4 --out $OUT/$v-$pass 2>&1 | grep -v "Warning\|exe_args" > $OUT/$v-$pass.log
    tail -2 $OUT/$v-$pass.log
  done
done
timeout 110 python3 -u benchmarks/bench.py --directions bwd --causal 1 --providers cuteattn,fa4 --out $OUT/causal 2>&1 \
  | grep -v "Warning\|exe_args" > $OUT/causal.log; tail -6 $OUT/causal.log
