# Session 36: the hdim 128 backward's new unmasked default (80 rows, lse and dpsum under the GEMMs in flight, dV
# before dS^T's fence), with the device time left (about 300 s): (1) the backward's GPU tests that run it (hdim
# 128's test_backward, deterministic, GQA, split tails, a split forward's backward, strided inputs, autograd);
# (2) racecheck over unmasked hdim 128 launches; (3) if time is left, bench.py at 4k and 16k against FA4.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
timeout 150 python3 -m pytest -q -rf -n 8 tests/test_gpu_bwd_sm90.py > $OUT/tests.log 2>&1 \
  -k "(test_backward and 128) or deterministic or gqa or split_tail or strided or autograd"
tail -n 3 $OUT/tests.log
cases="import cuteattn, torch
for sq, sk, h in ((113, 200, 1), (200, 113, 2), (300, 500, 2)):
    q = torch.randn(1, sq, 2, 128, device='cuda', dtype=torch.bfloat16, requires_grad=True)
    k, v = (torch.randn(1, sk, h, 128, device='cuda', dtype=torch.bfloat16, requires_grad=True) for _ in 'kv')
    cuteattn.flash_attn_func(q, k, v).backward(torch.randn_like(q))"
timeout 45 compute-sanitizer --tool racecheck --report-api-errors no --error-exitcode 9 python3 -c "$cases" \
  > $OUT/sanitizer-racecheck.log 2>&1
echo "compute-sanitizer racecheck: exit $?"; grep -E "RACECHECK SUMMARY|hazard" $OUT/sanitizer-racecheck.log | head -3
timeout 60 python3 benchmarks/bench.py --directions bwd --hdims 128 --causal 0 --seqlens 4k,16k --rounds 3 \
  --providers cuteattn,fa4 --out $OUT 2>&1 | grep -v -i warning > $OUT/bench.log
tail -n 4 $OUT/bench.log
