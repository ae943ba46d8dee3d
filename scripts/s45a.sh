# Session 34. (1) racecheck and memcheck of hdim 192's backward (bwd_kernel_wide: causal, and a split tail) beside
# the GPU tests of BwdConfig.early_dv; (2) hdim 128 backward, tile_m 80 with early_dv against the default and
# FA4, 3 rounds; (3) (192, 128) against the column split and FA4, 2 rounds; 500 ms of warm-up. About 350 s; each
# part has its own time limit, the last is cut first.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
CALLS="
import torch, cuteattn
for seqlen_q, seqlen_k, causal in ((200, 300, True), (600, 300, False)):  # the second over a split tail
    q = torch.randn(1, seqlen_q, 2, 192, device='cuda', dtype=torch.bfloat16, requires_grad=True)
    k, v = (torch.randn(1, seqlen_k, 1, 192, device='cuda', dtype=torch.bfloat16, requires_grad=True) for _ in 'kv')
    out = cuteattn.flash_attn_func(q, k, v, causal=causal)
    out.backward(torch.randn_like(out))
torch.cuda.synchronize(); print('ran')
"
for tool in racecheck memcheck; do
  timeout 150 compute-sanitizer --tool $tool python3 -c "$CALLS" > $OUT/$tool.log 2>&1 &
done
timeout 150 python3 -m pytest -q -x tests/test_gpu_bwd_sm90.py -k "test_config_variants and early_dv" > $OUT/tests.log 2>&1 &
wait
grep -h "SUMMARY\|^ran" $OUT/racecheck.log $OUT/memcheck.log; tail -n 3 $OUT/tests.log
S="timeout 150 python3 -u benchmarks/sweep_sm90.py --direction bwd --rounds 3 --warmup-ms 500"
$S --hdims 128 --seqlens 1k,4k,16k --variants default= e80=tile_m:80,early_dv:True 2>&1 \
  | grep -v "Warning\|exe_args" > $OUT/sweep128.log
tail -n 8 $OUT/sweep128.log
$S --hdims 192 --hdim-v 128 --rounds 2 --seqlens 2k,8k --variants default= splitd=head_dim_on_m:False,tile_n:64 2>&1 \
  | grep -v "Warning\|exe_args" > $OUT/sweep192.log
tail -n 6 $OUT/sweep192.log
