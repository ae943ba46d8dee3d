# The forward at 16k plain, the one forward shape of notes-32's grid behind FA4, by less than the 16k clock
# swing: one CTA a tile (the default there, LONG_UNMASKED) against the claimed persistent grid
# and FA4, hdims 64 and 128, 5 rounds after 1000 ms of warm-up (settled clocks). About 120 s.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
timeout 300 python3 -u benchmarks/sweep_sm90.py --direction fwd --hdims 64,128 --seqlens 16k --causal 0 --rounds 5 \
  --warmup-ms 1000 --variants default= claimed=persistent:True,dynamic:True 2>&1 | grep -v "Warning\|exe_args" \
  > $OUT/fwd16k.log
tail -n 5 $OUT/fwd16k.log
