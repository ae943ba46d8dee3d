"""Attention variants as FlexAttention mods, plain PyTorch functions that cuteattn compiles into its kernels.

Each entry of `gallery()` is (score_mod, mask_mod), either may be None. Run this file on a GPU to compare
every variant, forward and backward, with the PyTorch path:

    python examples/gallery.py
"""

from __future__ import annotations

import math

import torch


def gallery(batch: int, heads: int, seqlen_q: int, seqlen_k: int, device="cuda", requires_grad=False) -> dict:
    """name -> (score_mod, mask_mod) for sequences of these lengths; tables are random, on `device`."""
    generator = torch.Generator(device="cpu").manual_seed(0)

    def table(*shape, scale=1.0):
        t = (torch.randn(*shape, generator=generator) * scale).to(device)
        return t.requires_grad_(requires_grad)

    offset = seqlen_k - seqlen_q  # align the diagonal to the bottom right, as causal=True does

    def causal(b, h, q_idx, kv_idx):
        return q_idx + offset >= kv_idx

    def sliding_window(b, h, q_idx, kv_idx):
        return (q_idx + offset >= kv_idx) & (q_idx + offset - kv_idx <= 256)

    def prefix_lm(b, h, q_idx, kv_idx):
        return (kv_idx < 100) | (q_idx + offset >= kv_idx)

    documents = torch.sort(torch.randint(0, 5, (batch, max(seqlen_q, seqlen_k)), generator=generator), dim=-1)
    doc_id = documents.values.to(device=device, dtype=torch.int32)

    def document(b, h, q_idx, kv_idx):
        return (doc_id[b, q_idx] == doc_id[b, kv_idx]) & (q_idx >= kv_idx)

    slopes = torch.exp2(-8.0 * torch.arange(1, heads + 1) / heads).to(device)

    def alibi(score, b, h, q_idx, kv_idx):
        return score - slopes[h] * (q_idx - kv_idx).abs()

    bias = table(heads, 511, scale=0.5)

    def rel_bias(score, b, h, q_idx, kv_idx):
        return score + bias[h, (q_idx - kv_idx).clamp(-255, 255) + 255]

    buckets = table(32, heads, scale=0.5)

    def t5_bias(score, b, h, q_idx, kv_idx):  # T5's bidirectional buckets: 8 exact, 8 logarithmic, per sign
        rel = kv_idx - q_idx
        side = torch.where(rel > 0, 16, 0)
        distance = rel.abs()
        # + 0.5 keeps the bucket edges off whole distances, where float rounding could pick either side.
        far = 8 + (torch.log((distance.float() + 0.5) / 8) / math.log(128 / 8) * 8).to(torch.int32)
        bucket = side + torch.where(distance < 8, distance, far.clamp(max=15))
        return score + buckets[bucket, h]

    def tanh_softcap(score, b, h, q_idx, kv_idx):
        return 20.0 * torch.tanh(score / 20.0)

    head_scale = table(heads, scale=0.3).detach().add_(1.0).requires_grad_(requires_grad)

    def per_head_scale(score, b, h, q_idx, kv_idx):
        return score * head_scale[h]

    def dilated(b, h, q_idx, kv_idx):
        return ((q_idx + offset - kv_idx) % 3 == 0) & (q_idx + offset >= kv_idx)

    block = 64
    blocks_q, blocks_k = -(-seqlen_q // block), -(-seqlen_k // block)
    kept = (torch.rand(heads, blocks_q, blocks_k, generator=generator) < 0.4).to(device)

    def block_sparse(b, h, q_idx, kv_idx):
        return kept[h, q_idx // block, kv_idx // block]

    def empty_rows(b, h, q_idx, kv_idx):  # every seventh query row sees nothing
        return (q_idx % 7 != 3) & (kv_idx <= q_idx + offset)

    return {
        "causal": (None, causal),
        "sliding_window": (None, sliding_window),
        "prefix_lm": (None, prefix_lm),
        "document": (None, document),
        "alibi": (alibi, None),
        "rel_bias": (rel_bias, None),
        "t5_bias": (t5_bias, None),
        "tanh_softcap": (tanh_softcap, None),
        "per_head_scale": (per_head_scale, None),
        "dilated": (None, dilated),
        "block_sparse": (None, block_sparse),
        "empty_rows": (None, empty_rows),
        "rel_bias_document": (rel_bias, document),
    }


def main():
    import cuteattn
    from cuteattn import reference

    batch, heads, seqlen, head_dim = 2, 4, 1000, 128
    print(f"{'variant':20s} {'out':>9s} {'dq':>9s} {'dk':>9s} {'dv':>9s}   (max |cuteattn - fp32 PyTorch path|)")
    for name, (score_mod, mask_mod) in gallery(batch, heads, seqlen, seqlen).items():
        q, k, v = (torch.randn(batch, seqlen, heads, head_dim, device="cuda", dtype=torch.bfloat16,
                               requires_grad=True) for _ in range(3))
        out = cuteattn.flash_attn_func(q, k, v, score_mod=score_mod, mask_mod=mask_mod)
        dout = torch.randn_like(out)
        grads = torch.autograd.grad(out, (q, k, v), dout)
        leaves = [t.detach().float().requires_grad_() for t in (q, k, v)]
        opts = reference.Options(softmax_scale=head_dim ** -0.5, window_left=None, window_right=None, softcap=0.0,
                                 learnable_sink=None, score_mod=score_mod, mask_mod=mask_mod, block_mask=None)
        ref = reference.attention(*leaves, opts)[0]
        ref_grads = torch.autograd.grad(ref, leaves, dout.float())
        errors = [(a.float() - b).abs().max().item() for a, b in zip((out, *grads), (ref, *ref_grads))]
        print(f"{name:20s} " + " ".join(f"{e:9.2e}" for e in errors))


if __name__ == "__main__":
    main()
