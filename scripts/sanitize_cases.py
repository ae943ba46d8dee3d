"""Small launches of each kernel, for compute-sanitizer (racecheck, memcheck) on the GPU machine."""

import torch

from cuteattn.reference import Options
from cuteattn.sm90 import bwd_preprocess, forward


def options(left=None, right=None, softcap=0.0, sink=None):
    return Options(softmax_scale=128 ** -0.5, window_left=left, window_right=right, softcap=softcap,
                   learnable_sink=sink, score_mod=None, mask_mod=None, block_mask=None)


sink = torch.randn(2, device="cuda")
for opts, (seqlen_q, seqlen_k) in ((options(), (113, 200)), (options(right=0), (200, 113)),
                                   (options(right=0), (17, 17)), (options(100, 0, 30.0, sink), (300, 500))):
    q = torch.randn(1, seqlen_q, 2, 128, device="cuda", dtype=torch.bfloat16)
    k, v = (torch.randn(1, seqlen_k, 1, 128, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    out, lse = forward.forward(q, k, v, opts)
    bwd_preprocess.bwd_preprocess(out, torch.randn_like(out), lse)
torch.cuda.synchronize()
print("sanitize cases ran")
