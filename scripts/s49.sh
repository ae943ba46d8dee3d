# Session 37, for the next session with a GPU. (1) ncu of one hdim 128 causal 4k backward of ours and of FA4's
# (where the remaining 1-3% goes: notes-37); (2) the hdim 128 forward at 16k unmasked and (3) the hdim 64 1k
# causal backward, each against FA4 at settled clocks (5 rounds after 1000 ms). About 260 s.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
bash scripts/ncu_compare.sh bwd 128 --causal --seqlen 4k 2>&1 | grep -v -i warning | tee $OUT/ncu.log
timeout 90 python3 benchmarks/sweep_sm90.py --direction fwd --hdims 128 --causal 0 --seqlens 16k --rounds 5 \
  --warmup-ms 1000 --variants default= 2>&1 | grep -v -i warning > $OUT/fwd16k.log
timeout 90 python3 benchmarks/sweep_sm90.py --direction bwd --hdims 64 --causal 1 --seqlens 1k --rounds 5 \
  --warmup-ms 1000 --variants default= 2>&1 | grep -v -i warning > $OUT/bwd64-1k.log
grep -h "ms " $OUT/fwd16k.log $OUT/bwd64-1k.log
