"""Small launches of each kernel, forward and backward, for compute-sanitizer (racecheck, memcheck) on the
GPU machine: the features (packed query heads too), then mods (a table score_mod whose table requires grad, a
document mask_mod with its block sparsity, the deterministic backward)."""

import torch

import cuteattn


def run(seqlen_q, seqlen_k, heads_kv=1, head_dim=128, head_dim_v=None, **kwargs):
    q = torch.randn(1, seqlen_q, 2, head_dim, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    k, v = (torch.randn(1, seqlen_k, heads_kv, d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
            for d in (head_dim, head_dim_v or head_dim))
    out = cuteattn.flash_attn_func(q, k, v, **kwargs)
    out.backward(torch.randn_like(out))


sink = torch.randn(2, device="cuda", requires_grad=True)
run(113, 200)
run(200, 113, causal=True)
run(17, 17, causal=True)  # two query heads over one KV head, 17 queries: packed (pack_gqa)
run(113, 200, head_dim=64)  # three consumer warpgroups in the forward
run(200, 113, head_dim=64, causal=True)
run(300, 500, window_size=(100, 0), softcap=30.0, learnable_sink=sink)
run(200, 113, head_dim=256, causal=True)  # the split-d backward
run(200, 300, head_dim=192, causal=True)  # the backward with the head dim on the wgmma's M, one dO stage
run(600, 300, head_dim=192)  # the same over a split tail: 4 key blocks, each in 2 parts of 10 steps
run(113, 200, head_dim=192, head_dim_v=128, heads_kv=2, deterministic=True)

bias = torch.randn(2, 511, device="cuda", requires_grad=True)
doc = (torch.arange(300, device="cuda", dtype=torch.int32) // 97).view(1, -1)


def rel_bias(score, b, h, q_idx, kv_idx):
    return score + bias[h, (q_idx - kv_idx).clamp(-255, 255) + 255]


def document(b, h, q_idx, kv_idx):
    return (doc[b, q_idx] == doc[b, kv_idx]) & (q_idx >= kv_idx)


run(300, 300, score_mod=rel_bias, mask_mod=document)
run(300, 300, heads_kv=2, mask_mod=document, deterministic=True)


def persistent(seqlen_q, seqlen_k, causal, **config):
    """The forward alone under a persistent grid: more tiles than SMs (16 heads, batch 12), so a CTA walks
    several, reusing its pipelines."""
    from cuteattn.reference import Options
    from cuteattn.sm90.forward import forward
    from cuteattn.sm90.fwd_config import FwdConfig

    q = torch.randn(12, seqlen_q, 16, 128, device="cuda", dtype=torch.bfloat16)
    k, v = (torch.randn(12, seqlen_k, 4, 128, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    opts = Options(softmax_scale=128 ** -0.5, window_left=None, window_right=0 if causal else None, softcap=0.0,
                   learnable_sink=None, score_mod=None, mask_mod=None, block_mask=None)
    forward(q, k, v, opts, config=FwdConfig(persistent=True, **config))


persistent(200, 333, causal=False)
persistent(300, 300, causal=True, num_consumers=3)
persistent(300, 300, causal=True, dynamic=True)
torch.cuda.synchronize()
print("sanitize cases ran")
