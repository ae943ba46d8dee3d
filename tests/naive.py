"""The textbook computation in fp64, one full score matrix per head: the oracle of the PyTorch path."""

import math

import torch


def naive_attention(q, k, v, scale=None, causal=False, window=(None, None), softcap=0.0, sink=None,
                    score_mod=None, mask_mod=None):
    """q (B, Sq, Hq, D), k (B, Sk, Hkv, D), v (B, Sk, Hkv, Dv) -> out (B, Sq, Hq, Dv), lse (B, Hq, Sq), fp64."""
    q, k, v = q.double(), k.double(), v.double()
    batch, seqlen_q, heads_q, head_dim = q.shape
    seqlen_k, heads_kv = k.shape[1], k.shape[2]
    k = k.repeat_interleave(heads_q // heads_kv, dim=2)
    v = v.repeat_interleave(heads_q // heads_kv, dim=2)
    scale = 1 / math.sqrt(head_dim) if scale is None else scale
    s = torch.einsum("bqhd,bkhd->bhqk", q, k) * scale
    if softcap > 0:
        s = softcap * torch.tanh(s / softcap)
    shape = s.shape
    b = torch.arange(batch).view(-1, 1, 1, 1).expand(shape)
    h = torch.arange(heads_q).view(1, -1, 1, 1).expand(shape)
    i = torch.arange(seqlen_q).view(1, 1, -1, 1).expand(shape)
    j = torch.arange(seqlen_k).view(1, 1, 1, -1).expand(shape)
    if score_mod is not None:
        s = score_mod(s, b, h, i, j)
    left, right = window
    if causal:
        right = 0
    visible = torch.ones(shape, dtype=torch.bool)
    if left is not None:
        visible &= j >= i + seqlen_k - seqlen_q - left
    if right is not None:
        visible &= j <= i + seqlen_k - seqlen_q + right
    if mask_mod is not None:
        visible &= mask_mod(b, h, i, j)
    s = s.masked_fill(~visible, -math.inf)
    if sink is not None:
        sink_col = sink.double().view(1, -1, 1, 1).expand(batch, heads_q, seqlen_q, 1)
        lse = torch.logsumexp(torch.cat([s, sink_col], dim=-1), dim=-1)
    else:
        lse = torch.logsumexp(s, dim=-1)
    p = torch.exp(s - lse.unsqueeze(-1))
    p = torch.where(torch.isneginf(lse).unsqueeze(-1), torch.zeros_like(p), p)
    out = torch.einsum("bhqk,bkhd->bqhd", p, v)
    return out, lse
