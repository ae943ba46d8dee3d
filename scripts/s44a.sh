# hdim 192 with head_dim_v 128 (DeepSeek's shape), backward: the head-dim-on-M kernel (default) against the column
# split (its former default) and FA4, 3 rounds after 500 ms of warm-up. About 120 s.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
timeout 200 python3 -u benchmarks/sweep_sm90.py --direction bwd --hdims 192 --hdim-v 128 --seqlens 2k,8k --rounds 3 \
  --warmup-ms 500 --variants default= splitd=head_dim_on_m:False,tile_n:64 2>&1 | grep -v "Warning\|exe_args" \
  > $OUT/sweep.log
tail -n 6 $OUT/sweep.log
