"""The PyTorch path: every feature of cuteattn in plain PyTorch, computed in fp32.

It is the oracle of every GPU test and what runs on CPU tensors. Gradients come from autograd. Queries
are processed in chunks of rows, each an exact softmax over all keys, and under autograd each chunk is
checkpointed (recomputed in the backward), so memory grows with seqlen, never with seqlen^2.

Order of operations on one score, as in the kernels:
    s = q . k * softmax_scale
    s = softcap * tanh(s / softcap)            (softcap > 0)
    s = score_mod(s, b, h, q_idx, kv_idx)      (score_mod given)
    s = -inf where the key is not visible      (causal, window, mask_mod, block_mask)
    p = softmax over the row's keys and the learnable sink, if any
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch.utils.checkpoint import checkpoint

LOG2_E = math.log2(math.e)

# Scores held at once by one chunk of query rows (fp32 elements, all batches and heads together).
CHUNK_ELEMENTS = 1 << 24


@dataclass(frozen=True)
class Options:
    """What a call asks for, beyond q, k, v; already checked by `cuteattn.checks`."""

    softmax_scale: float
    window_left: Optional[int]  # None: unbounded; causal is window_right = 0
    window_right: Optional[int]
    softcap: float
    learnable_sink: Optional[torch.Tensor]  # (heads_q,), a logit in units of the scaled scores
    score_mod: Optional[Callable]
    mask_mod: Optional[Callable]
    block_mask: Optional[object]  # torch.nn.attention.flex_attention.BlockMask


def rows_per_chunk(batch: int, heads: int, seqlen_q: int, seqlen_k: int) -> int:
    return max(1, min(seqlen_q, CHUNK_ELEMENTS // max(1, batch * heads * seqlen_k)))


def attention(q, k, v, opts: Options, batch_offset: int = 0):
    """Dense attention. q (B, Sq, Hq, D), k (B, Sk, Hkv, D), v (B, Sk, Hkv, Dv), Hq % Hkv == 0.

    Returns out (B, Sq, Hq, Dv) and lse (B, Hq, Sq), both fp32. `batch_offset` is added to the batch
    index the mods see (varlen calls this once per sequence).
    """
    batch, seqlen_q, heads_q, _ = q.shape
    seqlen_k, heads_kv = k.shape[1], k.shape[2]
    group = heads_q // heads_kv
    # (B, Hkv, G, Sq, D): the query heads that share a KV head sit together, h = h_kv * G + g.
    qf = q.float().transpose(1, 2).unflatten(1, (heads_kv, group))
    kf = k.float().transpose(1, 2).unsqueeze(2)
    vf = v.float().transpose(1, 2).unsqueeze(2)
    sink = opts.learnable_sink.float() if opts.learnable_sink is not None else None
    block_masks = expand_block_mask(opts.block_mask, q.device) if opts.block_mask is not None else None

    chunk = rows_per_chunk(batch, heads_q, seqlen_q, seqlen_k)
    leaves = (q, k, v, opts.learnable_sink)
    has_mods = opts.score_mod is not None or opts.mask_mod is not None
    recompute = torch.is_grad_enabled() and (has_mods or any(t is not None and t.requires_grad for t in leaves))
    outs, lses = [], []
    for start in range(0, seqlen_q, chunk):
        args = (qf[:, :, :, start:start + chunk], kf, vf, sink)
        static = dict(opts=opts, q_start=start, seqlen_q=seqlen_q, batch_offset=batch_offset,
                      block_masks=block_masks)
        if recompute:
            o, lse = checkpoint(_attend_chunk, *args, **static, use_reentrant=False, preserve_rng_state=False)
        else:
            o, lse = _attend_chunk(*args, **static)
        outs.append(o)
        lses.append(lse)
    out = torch.cat(outs, dim=2) if outs else qf.new_zeros(batch, heads_q, 0, v.shape[-1])
    lse = torch.cat(lses, dim=2) if lses else qf.new_zeros(batch, heads_q, 0)
    return out.transpose(1, 2), lse


def _attend_chunk(q, k, v, sink, *, opts: Options, q_start: int, seqlen_q: int, batch_offset: int,
                  block_masks):
    batch, heads_kv, group, rows, _ = q.shape
    heads_q, seqlen_k = heads_kv * group, k.shape[-2]
    s = (q @ k.transpose(-1, -2)).flatten(1, 2) * opts.softmax_scale  # (B, Hq, rows, Sk)
    if opts.softcap > 0:
        s = opts.softcap * torch.tanh(s / opts.softcap)

    device = s.device
    b = (torch.arange(batch, device=device) + batch_offset).view(-1, 1, 1, 1)
    h = torch.arange(heads_q, device=device).view(1, -1, 1, 1)
    q_idx = torch.arange(q_start, q_start + rows, device=device).view(1, 1, -1, 1)
    kv_idx = torch.arange(seqlen_k, device=device).view(1, 1, 1, -1)

    if opts.score_mod is not None:
        s = _call_score_mod(opts.score_mod, s, b, h, q_idx, kv_idx)
    visible = _visible(opts, s.shape, b, h, q_idx, kv_idx, seqlen_q, seqlen_k, block_masks)
    if visible is not None:
        s = s.masked_fill(~visible, -math.inf)

    row_max = s.amax(dim=-1, keepdim=True) if seqlen_k > 0 else s.new_full((*s.shape[:-1], 1), -math.inf)
    sink_logit = sink.view(1, -1, 1, 1) if sink is not None else None
    if sink_logit is not None:
        row_max = torch.maximum(row_max, sink_logit)
    # Softmax is shift-invariant, so the shift needs no gradient; rows with nothing visible shift by 0.
    shift = torch.where(torch.isneginf(row_max), torch.zeros_like(row_max), row_max).detach()
    p = torch.exp(s - shift)
    row_sum = p.sum(dim=-1, keepdim=True)
    if sink_logit is not None:
        row_sum = row_sum + torch.exp(sink_logit - shift)
    empty = row_sum == 0
    row_sum_safe = torch.where(empty, torch.ones_like(row_sum), row_sum)
    out = (p.unflatten(1, (heads_kv, group)) @ v).flatten(1, 2) / row_sum_safe
    lse = torch.where(empty, torch.full_like(row_sum, -math.inf), torch.log(row_sum_safe) + shift)
    return out, lse.squeeze(-1)


def _visible(opts: Options, shape, b, h, q_idx, kv_idx, seqlen_q, seqlen_k, block_masks):
    """Boolean mask broadcastable to `shape`, or None when every key is visible."""
    visible = None

    def both(a, m):
        return m if a is None else a & m

    # Causal and window are aligned to the bottom right: query i sits at key position i + Sk - Sq.
    diagonal = q_idx + (seqlen_k - seqlen_q)
    if opts.window_left is not None:
        visible = both(visible, kv_idx >= diagonal - opts.window_left)
    if opts.window_right is not None:
        visible = both(visible, kv_idx <= diagonal + opts.window_right)
    if opts.mask_mod is not None:
        visible = both(visible, _call_mask_mod(opts.mask_mod, shape, b, h, q_idx, kv_idx))
    if block_masks is not None:
        visible = both(visible, _block_mask_visible(block_masks, shape, b, h, q_idx, kv_idx))
    return visible


@dataclass(frozen=True)
class BlockMaskBlocks:
    partial: torch.Tensor  # (Bm, Hm, q_blocks, kv_blocks) bool: listed, mask_mod decides per element
    full: torch.Tensor  # (Bm, Hm, q_blocks, kv_blocks) bool: listed as full, every element visible
    block_q: int
    block_kv: int
    mask_mod: Optional[Callable]


def _blocks_to_dense(num_blocks, indices, kv_blocks):
    """The (Bm, Hm, q_blocks, kv_blocks) bool matrix of a BlockMask's (num, indices) lists."""
    listed = torch.arange(indices.shape[-1], device=indices.device) < num_blocks.unsqueeze(-1)
    # Unlisted slots scatter into a spare column that is dropped.
    target = torch.where(listed, indices.long(), torch.full_like(indices, kv_blocks, dtype=torch.long))
    dense = torch.zeros(*indices.shape[:-1], kv_blocks + 1, dtype=torch.bool, device=indices.device)
    dense.scatter_(-1, target, True)
    return dense[..., :kv_blocks]


def expand_block_mask(block_mask, device) -> BlockMaskBlocks:
    block_q, block_kv = block_mask.BLOCK_SIZE
    kv_blocks = -(-block_mask.seq_lengths[1] // block_kv)
    partial = _blocks_to_dense(block_mask.kv_num_blocks, block_mask.kv_indices, kv_blocks)
    if block_mask.full_kv_num_blocks is not None:
        full = _blocks_to_dense(block_mask.full_kv_num_blocks, block_mask.full_kv_indices, kv_blocks)
    else:
        full = torch.zeros_like(partial)
    return BlockMaskBlocks(partial.to(device), full.to(device), block_q, block_kv, block_mask.mask_mod)


def _block_mask_visible(blocks: BlockMaskBlocks, shape, b, h, q_idx, kv_idx):
    q_block = q_idx.squeeze(-1).squeeze(0).squeeze(0) // blocks.block_q
    kv_block = kv_idx.view(-1) // blocks.block_kv
    partial = blocks.partial[:, :, q_block][..., kv_block]
    full = blocks.full[:, :, q_block][..., kv_block]
    if blocks.mask_mod is None:
        return partial | full
    return full | (partial & _call_mask_mod(blocks.mask_mod, shape, b, h, q_idx, kv_idx))


def _call_score_mod(score_mod, s, b, h, q_idx, kv_idx):
    result = score_mod(s, b, h, q_idx, kv_idx)
    if not isinstance(result, torch.Tensor) or not result.is_floating_point():
        got = f"a {result.dtype} tensor" if isinstance(result, torch.Tensor) else f"{type(result).__name__}"
        raise TypeError(f"score_mod must return a floating-point tensor (the new score); it returned {got}")
    try:
        return torch.broadcast_to(result, s.shape).float()
    except RuntimeError:
        raise TypeError(f"score_mod returned shape {tuple(result.shape)}, which does not broadcast to the "
                        f"score's shape {tuple(s.shape)}") from None


def _call_mask_mod(mask_mod, shape, b, h, q_idx, kv_idx):
    result = mask_mod(b, h, q_idx, kv_idx)
    if not isinstance(result, torch.Tensor) or result.dtype != torch.bool:
        got = f"a {result.dtype} tensor" if isinstance(result, torch.Tensor) else f"{type(result).__name__}"
        raise TypeError(f"mask_mod must return a bool tensor (True: the key is visible); it returned {got}")
    try:
        torch.broadcast_shapes(result.shape, shape)
    except RuntimeError:
        raise TypeError(f"mask_mod returned shape {tuple(result.shape)}, which does not broadcast to the "
                        f"score's shape {tuple(shape)}") from None
    return result


def attention_varlen(q, k, v, opts: Options, *, cu_seqlens_q, cu_seqlens_k, seqused_q, seqused_k,
                     page_table):
    """Attention over a batch of sequences of different lengths, one dense call per sequence.

    q is (total_q, Hq, D) with cu_seqlens_q, or (B, Sq, Hq, D) without. k and v are (total_k, Hkv, D)
    with cu_seqlens_k, (num_pages, page_size, Hkv, D) with page_table, or (B, Sk, Hkv, D). seqused_*
    override the lengths (tokens past them are ignored; their output rows are 0 and their lse -inf).
    Returns out in q's layout and lse (Hq, total_q), or (B, Hq, Sq) for a batched q; both fp32.
    """
    batch = _varlen_batch(cu_seqlens_q, cu_seqlens_k, seqused_q, seqused_k, page_table, q)
    cu_q = cu_seqlens_q.tolist() if cu_seqlens_q is not None else None
    cu_k = cu_seqlens_k.tolist() if cu_seqlens_k is not None else None
    used_q = seqused_q.tolist() if seqused_q is not None else None
    used_k = seqused_k.tolist() if seqused_k is not None else None
    heads_q, head_dim_v = q.shape[-2], v.shape[-1]
    out_pieces, lse_pieces = [], []

    def pad(rows):  # rows of q that no sequence uses: out 0, lse -inf
        out_pieces.append(q.new_zeros(rows, heads_q, head_dim_v, dtype=torch.float32))
        lse_pieces.append(q.new_full((heads_q, rows), -math.inf, dtype=torch.float32))

    for i in range(batch):
        if cu_q is not None:
            q_start, q_rows = cu_q[i], cu_q[i + 1] - cu_q[i]
            q_i = q[q_start:q_start + q_rows]
            if i == 0:
                pad(q_start)
        else:
            q_rows = q.shape[1]
            q_i = q[i]
        q_len = used_q[i] if used_q is not None else q_rows
        k_len = (used_k[i] if used_k is not None
                 else cu_k[i + 1] - cu_k[i] if cu_k is not None else k.shape[1])
        if page_table is not None:
            k_i, v_i = _gather_pages(k, page_table[i], k_len), _gather_pages(v, page_table[i], k_len)
        elif cu_k is not None:
            k_i, v_i = k[cu_k[i]:cu_k[i] + k_len], v[cu_k[i]:cu_k[i] + k_len]
        else:
            k_i, v_i = k[i, :k_len], v[i, :k_len]
        o_i, lse_i = attention(q_i[:q_len].unsqueeze(0), k_i.unsqueeze(0), v_i.unsqueeze(0), opts,
                               batch_offset=i)
        out_pieces.append(o_i[0])
        lse_pieces.append(lse_i[0])
        pad(q_rows - q_len)
    if cu_q is not None:
        pad(q.shape[0] - cu_q[-1])
        # lse in FlashAttention's varlen layout: (Hq, total_q).
        return torch.cat(out_pieces, dim=0), torch.cat(lse_pieces, dim=1)
    rows = q.shape[1]
    out = torch.cat(out_pieces, dim=0).view(batch, rows, heads_q, head_dim_v)
    lse = torch.cat(lse_pieces, dim=1).view(heads_q, batch, rows).transpose(0, 1)
    return out, lse


def _varlen_batch(cu_seqlens_q, cu_seqlens_k, seqused_q, seqused_k, page_table, q) -> int:
    for t in (cu_seqlens_q, cu_seqlens_k):
        if t is not None:
            return t.shape[0] - 1
    for t in (seqused_q, seqused_k, page_table):
        if t is not None:
            return t.shape[0]
    return q.shape[0]


def _gather_pages(cache, pages, length):
    """The first `length` tokens of one sequence from a paged cache (num_pages, page_size, H, D)."""
    page_size = cache.shape[1]
    used = -(-length // page_size)
    return cache[pages[:used].long()].flatten(0, 1)[:length]


def bwd_preprocess(out: torch.Tensor, dout: torch.Tensor, lse: torch.Tensor):
    """The backward's per-row statistics, from O and dO (batch, seqlen, heads, head_dim_v) and lse.

    Returns `dpsum = rowsum(dO * O)` and `lse_log2 = lse * log2(e)`, both (batch, heads, seqlen) fp32.
    A row with no visible key (lse = -inf) gets lse_log2 = 0, so exp2(s - lse_log2) of its masked
    scores stays 0 rather than NaN.
    """
    dpsum = (dout.float() * out.float()).sum(dim=-1).transpose(1, 2)
    lse_log2 = torch.where(torch.isneginf(lse), torch.zeros_like(lse), lse * LOG2_E)
    return dpsum.contiguous(), lse_log2.float().contiguous()
