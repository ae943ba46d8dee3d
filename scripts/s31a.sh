# The grid of issues 3 and 4 (hdim 64 and 128, plain and causal, 1k/4k/16k, forward and backward) under the
# defaults (num_splits=0: the forward's split tails too), cuteattn, FA4 and cuDNN in one process; then the host
# time of one call on a tiny shape. Logs under $OUT.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
timeout 40 python3 -u benchmarks/host_overhead.py 2>&1 | grep -v "Warning\|exe_args" > $OUT/host_overhead.log; cat $OUT/host_overhead.log
timeout 370 python3 -u benchmarks/bench.py --providers cuteattn,fa4,sdpa-cudnn --out $OUT 2>&1 | grep -v "Warning\|exe_args" > $OUT/bench.log; tail -27 $OUT/bench.log
