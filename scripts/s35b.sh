# Issue 5 against FA4 as the issue names it (fa4-sparse: its CuTe DSL mask_mod and block-sparse tensors) beside
# FA4's own window and varlen: each provider's output and gradients against cuteattn's on the bench's inputs, then
# the causal window of 1024 and the causal documents of 4096, hdim 128, 4k and 16k, 3 rounds after 1000 ms of
# warm-up; then the mods suite's GPU tests. About 400 s.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
timeout 150 python3 - <<'PY' 2>&1 | grep -v "Warning\|exe_args" | tee $OUT/check.log
import sys, torch
sys.path.insert(0, "benchmarks")
import bench
providers, _ = bench.load_providers(["cuteattn", "fa4", "fa4-sparse"], [])
for variant, seqlen, batch in (("sliding_window", 4096, 4), ("document", 16384, 1)):
    case = bench.Case("bwd", 128, True, seqlen, batch, 16, variant)
    q, k, v = bench.make_inputs(case, torch.bfloat16)
    grad = torch.randn_like(q)
    results = {}
    for name, prepare in providers.items():
        out = prepare(q, k, v, case)()
        results[name] = [out.float(), *(g.float() for g in torch.autograd.grad(out, (q, k, v), grad))]
    for name in ("fa4", "fa4-sparse"):
        diffs = [(a - b).abs().max().item() for a, b in zip(results[name], results["cuteattn"])]
        print(f"{variant} {seqlen}: {name} - cuteattn, max |diff| of out, dq, dk, dv: " +
              " ".join(f"{d:.2e}" for d in diffs))
PY
for v in sliding_window document; do
  timeout 150 python3 -u benchmarks/bench.py --variant $v --hdims 128 --seqlens 4k,16k --causal 1 \
    --providers cuteattn,fa4,fa4-sparse --rounds 3 --warmup-ms 1000 --out $OUT/$v 2>&1 | grep -v "Warning\|exe_args" \
    > $OUT/$v.log
  tail -6 $OUT/$v.log
done
timeout 170 python3 -m pytest tests/test_gpu_mods_sm90.py -q -n 14 -p no:cacheprovider > $OUT/mods-tests.log 2>&1
echo "mods tests: $(tail -1 $OUT/mods-tests.log)"
