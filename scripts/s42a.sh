# hdim 192 backward (bwd_kernel_wide) with dK and dV staged through shared memory (stmatrix.trans) and a split tail:
# its GPU tests in three processes, then timed (notail: without the split tail) against the trees that stored them
# from the registers (_trees/regs, ee97289) and staged them with no split tail (_trees/staged, 5407e1a), and FA4;
# the wide kernel at hdim 128 against that head dim's default. Carry [".gpu", "_trees"]. About 450 s.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
T=tests/test_gpu_bwd_sm90.py
timeout 300 python3 -m pytest -q $T -k "test_backward and 192" > $OUT/tests-a.log 2>&1 &
timeout 300 python3 -m pytest -q $T \
  -k "head_dim_v or (wide_heads and 192) or (deterministic and 192) or (split_tail and 192)" \
  > $OUT/tests-b.log 2>&1 &
timeout 300 python3 -m pytest -q $T tests/test_gpu_mods_sm90.py -k "(config_variants and head_dim_on) or \
(gallery_backward_head_dims and 192) or (strong_position_bias and 192)" > $OUT/tests-c.log 2>&1 &
wait
for f in $OUT/tests-*.log; do tail -n 1 $f; done
timeout 240 bash scripts/compare_trees.sh "--direction bwd --hdims 192 --seqlens 2k,8k --rounds 3 --warmup-ms 500 \
--variants default= notail=tail_split:False"
timeout 80 python3 -u benchmarks/sweep_sm90.py --direction bwd --hdims 128 --seqlens 4k --causal 0,1 --rounds 3 \
  --warmup-ms 500 --variants default= wide=head_dim_on_m:True,tile_n:96 2>&1 | grep -v "Warning\|exe_args" \
  > $OUT/sweep128.log
tail -n 4 $OUT/sweep128.log
