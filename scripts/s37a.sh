# The hdim 128 backward at 4k, where it trails FA4 while level with it at 16k (notes-30): its config variants at
# settled clocks (3 rounds after 1000 ms of warm-up, FA4 in each; plain and causal), then ncu of one plain call of
# ours and of FA4's (`scripts/ncu_compare.sh`), whose stall samples name where the step differs. About 380 s.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
timeout 220 python3 -u benchmarks/sweep_sm90.py --direction bwd --hdims 128 --seqlens 4k --causal 0,1 \
  --variants default= registers=stage_dkv:False serial=overlap_dq:False rows80=tile_m:80 --rounds 3 \
  --warmup-ms 1000 2>&1 | grep -v "Warning\|exe_args" > $OUT/bwd4k.log
tail -4 $OUT/bwd4k.log
timeout 150 bash scripts/ncu_compare.sh bwd 128 --seqlen 4k
