# hdim 128 backward, plain, 4k and 16k: ours (default) against FA4, 5 rounds after 1000 ms of warm-up, to tell
# whether the 16k gap of the grid (notes-32) holds. About 110 s.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
timeout 120 python3 -u benchmarks/sweep_sm90.py --direction bwd --causal 0 --rounds 5 --warmup-ms 1000 --hdims 128 \
  --seqlens 4k,16k --variants default= 2>&1 | grep -v "Warning\|exe_args" > $OUT/rounds.log
tail -4 $OUT/rounds.log
