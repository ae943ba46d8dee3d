# hdim 192 backward (bwd_kernel_wide) as it is now: racecheck and memcheck of its calls in sanitize_cases.py (causal,
# and a split tail), then (192, 128), DeepSeek's shape, timed against the column split (its former default) and FA4,
# 3 rounds after 500 ms of warm-up. About 240 s.
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
  timeout 200 compute-sanitizer --tool $tool python3 -c "$CALLS" > $OUT/$tool.log 2>&1 &
done
wait
grep -h "SUMMARY\|^ran" $OUT/racecheck.log $OUT/memcheck.log
timeout 200 python3 -u benchmarks/sweep_sm90.py --direction bwd --hdims 192 --hdim-v 128 --seqlens 2k,8k --rounds 3 \
  --warmup-ms 500 --variants default= splitd=head_dim_on_m:False,tile_n:64 2>&1 | grep -v "Warning\|exe_args" \
  > $OUT/sweep.log
tail -n 6 $OUT/sweep.log
