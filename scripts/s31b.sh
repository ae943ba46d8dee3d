# The headline cells of issues 3 and 4 (hdim 128, 16k, plain and causal, forward and backward) under the
# defaults, cuteattn, FA4 and cuDNN in one process; then the host time of one call on a tiny shape. Logs under $OUT.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
timeout 200 python3 -u benchmarks/bench.py --providers cuteattn,fa4,sdpa-cudnn --hdims 128 --seqlens 16k --out $OUT 2>&1 | grep -v "Warning\|exe_args" > $OUT/bench.log; tail -8 $OUT/bench.log
timeout 40 python3 -u benchmarks/host_overhead.py 2>&1 | grep -v "Warning\|exe_args" > $OUT/host_overhead.log; cat $OUT/host_overhead.log
