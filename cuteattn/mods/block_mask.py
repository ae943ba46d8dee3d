"""A PyTorch `BlockMask` (from `create_block_mask`) as a mask_mod, so the kernels take it like any other.

The BlockMask's lists become two dense bool tables over its own blocks, `full` and `partial`; the key is
visible where its block is full, or partial and the BlockMask's mask_mod says so (FlexAttention's rule).
The kernels then derive their own block sparsity, in their own tile sizes, from this mask_mod, so any
BLOCK_SIZE works. One function per (BlockMask, user mask_mod), kept while the BlockMask lives, so later
calls find their traces, kernels and block lists cached.
"""

from __future__ import annotations

import weakref
from dataclasses import replace
from typing import Callable, Optional

import torch

from cuteattn import reference

_folded: "weakref.WeakKeyDictionary[object, dict]" = weakref.WeakKeyDictionary()


def _mask_mod_of(blocks: reference.BlockMaskBlocks, user_mask_mod: Optional[Callable]) -> Callable:
    from torch.nn.attention.flex_attention import noop_mask

    inner = None if blocks.mask_mod is noop_mask else blocks.mask_mod
    full, partial = blocks.full, blocks.partial
    per_batch, per_head = full.shape[0] > 1, full.shape[1] > 1

    def block_mask_mod(b, h, q_idx, kv_idx):
        bi, hi = (b if per_batch else 0), (h if per_head else 0)
        q_block, kv_block = q_idx // blocks.block_q, kv_idx // blocks.block_kv
        listed = partial[bi, hi, q_block, kv_block]
        if inner is not None:
            listed = listed & inner(b, h, q_idx, kv_idx)
        visible = full[bi, hi, q_block, kv_block] | listed
        if user_mask_mod is not None:
            visible = visible & user_mask_mod(b, h, q_idx, kv_idx)
        return visible

    return block_mask_mod


def fold(opts: reference.Options, device: torch.device) -> reference.Options:
    """`opts` with its block_mask folded into the mask_mod (unchanged without a block_mask)."""
    if opts.block_mask is None:
        return opts
    per_mask = _folded.setdefault(opts.block_mask, {})
    mask_mod = per_mask.get(opts.mask_mod)
    if mask_mod is None:
        mask_mod = _mask_mod_of(reference.expand_block_mask(opts.block_mask, device), opts.mask_mod)
        per_mask[opts.mask_mod] = mask_mod
    return replace(opts, mask_mod=mask_mod, block_mask=None)
