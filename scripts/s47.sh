# Session 36, for the next session with a GPU, after `git revert --no-commit 6226443` (hdim 128's unmasked backward
# default: 80 rows, lse and dpsum under the GEMMs in flight, dV before dS^T's fence). (1) The backward's GPU tests;
# (2) racecheck and memcheck over unmasked hdim 128 launches; (3) bench.py, the hdim 128 unmasked backward against
# FA4 and cuDNN, 3 rounds. About 450 s.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
timeout 280 python3 -m pytest -q -rf -n 8 tests/test_gpu_bwd_sm90.py > $OUT/tests.log 2>&1
tail -n 3 $OUT/tests.log
cases="import cuteattn, torch
for sq, sk, h in ((113, 200, 1), (200, 113, 2), (300, 500, 2)):
    q = torch.randn(1, sq, 2, 128, device='cuda', dtype=torch.bfloat16, requires_grad=True)
    k, v = (torch.randn(1, sk, h, 128, device='cuda', dtype=torch.bfloat16, requires_grad=True) for _ in 'kv')
    cuteattn.flash_attn_func(q, k, v).backward(torch.randn_like(q))"
for tool in racecheck memcheck; do
  timeout 50 compute-sanitizer --tool $tool --report-api-errors no --error-exitcode 9 python3 -c "$cases" \
    > $OUT/sanitizer-$tool.log 2>&1
  echo "compute-sanitizer $tool: exit $?"
  grep -E "ERROR SUMMARY|RACECHECK SUMMARY|hazard" $OUT/sanitizer-$tool.log | head -3
done
timeout 130 python3 benchmarks/bench.py --directions bwd --hdims 128 --causal 0 --seqlens 1k,4k,16k --rounds 3 \
  --providers cuteattn,fa4,sdpa-cudnn --out $OUT 2>&1 | grep -v -i warning > $OUT/bench.log
tail -n 6 $OUT/bench.log
