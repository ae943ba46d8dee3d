# hdim 192 backward with the head dim on the wgmma's M (bwd_kernel_wide): its GPU tests in three processes beside
# racecheck of two small calls, then timed against split-d (its former default) and FA4, 3 rounds. About 480 s.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
T=tests/test_gpu_bwd_sm90.py
timeout 400 python3 -m pytest -q $T -k "test_backward and 192" > $OUT/tests-a.log 2>&1 &
timeout 400 python3 -m pytest -q $T -k "head_dim_v or wide_heads or (deterministic and 192)" > $OUT/tests-b.log 2>&1 &
timeout 400 python3 -m pytest -q $T tests/test_gpu_mods_sm90.py -k "(config_variants and (192 or head_dim_on)) or \
(gallery_backward_head_dims and 192) or (strong_position_bias and 192)" > $OUT/tests-c.log 2>&1 &
timeout 300 compute-sanitizer --tool racecheck python3 -c "
import torch, cuteattn
for hd, hv, causal, hkv in ((192, 192, True, 1), (192, 128, False, 2)):
    q = torch.randn(1, 200, 2, hd, device='cuda', dtype=torch.bfloat16, requires_grad=True)
    k, v = (torch.randn(1, 300, hkv, d, device='cuda', dtype=torch.bfloat16, requires_grad=True) for d in (hd, hv))
    out = cuteattn.flash_attn_func(q, k, v, causal=causal)
    out.backward(torch.randn_like(out))
torch.cuda.synchronize(); print('ran')
" > $OUT/racecheck.log 2>&1 &
wait
tail -3 $OUT/tests-*.log; grep -i "hazard\|error summary\|ran" $OUT/racecheck.log | tail -3
timeout 200 python3 -u benchmarks/sweep_sm90.py --direction bwd --hdims 192 --seqlens 2k,8k --rounds 3 \
  --warmup-ms 500 --variants default= splitd=head_dim_on_m:False,tile_n:64,do_stages:None 2>&1 \
  | grep -v "Warning\|exe_args" > $OUT/sweep.log
tail -8 $OUT/sweep.log
