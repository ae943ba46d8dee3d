"""Small launches of each kernel, for compute-sanitizer (racecheck, memcheck) on the GPU machine."""

import torch

from cuteattn.sm90 import bwd_preprocess, forward

for causal, (seqlen_q, seqlen_k) in ((False, (113, 200)), (True, (200, 113)), (True, (17, 17))):
    q = torch.randn(1, seqlen_q, 2, 128, device="cuda", dtype=torch.bfloat16)
    k, v = (torch.randn(1, seqlen_k, 1, 128, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    out, lse = forward.forward(q, k, v, 128 ** -0.5, causal)
    bwd_preprocess.bwd_preprocess(out, torch.randn_like(out), lse)
torch.cuda.synchronize()
print("sanitize cases ran")
