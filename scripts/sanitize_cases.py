"""Small launches of each kernel, forward and backward, for compute-sanitizer (racecheck, memcheck) on the
GPU machine: the features, then mods (a table score_mod whose table requires grad, a document mask_mod with
its block sparsity, the deterministic backward)."""

import torch

import cuteattn


def run(seqlen_q, seqlen_k, heads_kv=1, head_dim=128, **kwargs):
    q = torch.randn(1, seqlen_q, 2, head_dim, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    k, v = (torch.randn(1, seqlen_k, heads_kv, head_dim, device="cuda", dtype=torch.bfloat16, requires_grad=True)
            for _ in range(2))
    out = cuteattn.flash_attn_func(q, k, v, **kwargs)
    out.backward(torch.randn_like(out))


sink = torch.randn(2, device="cuda", requires_grad=True)
run(113, 200)
run(200, 113, causal=True)
run(17, 17, causal=True)
run(113, 200, head_dim=64)  # three consumer warpgroups in the forward
run(200, 113, head_dim=64, causal=True)
run(300, 500, window_size=(100, 0), softcap=30.0, learnable_sink=sink)

bias = torch.randn(2, 511, device="cuda", requires_grad=True)
doc = (torch.arange(300, device="cuda", dtype=torch.int32) // 97).view(1, -1)


def rel_bias(score, b, h, q_idx, kv_idx):
    return score + bias[h, (q_idx - kv_idx).clamp(-255, 255) + 255]


def document(b, h, q_idx, kv_idx):
    return (doc[b, q_idx] == doc[b, kv_idx]) & (q_idx >= kv_idx)


run(300, 300, score_mod=rel_bias, mask_mod=document)
run(300, 300, heads_kv=2, mask_mod=document, deterministic=True)
torch.cuda.synchronize()
print("sanitize cases ran")
