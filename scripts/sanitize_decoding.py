"""Small forward launches that pack query heads or split keys, for compute-sanitizer (racecheck, memcheck):
packed rows read and written in place, the split kernel's fp32 parts and their combine."""

import torch

import cuteattn


def run(seqlen_q, seqlen_k, heads=8, heads_kv=2, **kwargs):
    q = torch.randn(2, seqlen_q, heads, 128, device="cuda", dtype=torch.bfloat16)
    k, v = (torch.randn(2, seqlen_k, heads_kv, 128, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    cuteattn.flash_attn_func(q, k, v, **kwargs)


run(17, 17, causal=True)  # packed: groups of 4 query heads
run(1, 1000, num_splits=3)  # packed and split
run(70, 900, causal=True, num_splits=0, pack_gqa=False)  # split, unpacked
torch.cuda.synchronize()
