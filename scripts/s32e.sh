# Each kernel's GPU time a call of the backward (profile_one --kernels), cuteattn and FA4, where the grid has
# cuteattn behind: hdim 64 1k causal, hdim 128 1k, 4k and 16k causal. Then the host time after the plan key's
# trim. Logs under $OUT; about 120 s.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
for case in "64 1k" "128 1k" "128 4k" "128 16k"; do
  set -- $case
  for p in cuteattn fa4; do
    python3 benchmarks/profile_one.py --provider $p --direction bwd --hdim $1 --seqlen $2 --causal --calls 10 \
      --kernels 2>&1 | grep -v "Warning\|exe_args\|_warn_once"
  done
done | tee $OUT/kernels.log
python3 benchmarks/host_overhead.py 2>&1 | grep -v "Warning\|exe_args\|_warn_once\|AuxData" | tee $OUT/host.log
