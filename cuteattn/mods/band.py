"""A mask_mod that keeps a band of diagonals runs as the kernels' own sliding window.

A mask_mod that reads the positions only through q_idx - kv_idx (not b, h, nor a captured tensor) and shows
one run of consecutive differences is a window: the kernels' window needs no block lists, and masks only the
blocks its edges cut, with one compare a score. The run is found by evaluating the traced mask on every
difference the call's lengths hold.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import Optional

import torch

from cuteattn.mods.trace import TracedMod, trace_mask_mod


def _reads_only_difference(gm: torch.fx.GraphModule) -> bool:
    """Whether the graph reads neither b nor h, and q_idx and kv_idx only through their difference (either way)."""
    b, h, q_idx, kv_idx = [n for n in gm.graph.nodes if n.op == "placeholder"]
    readers = set(q_idx.users) | set(kv_idx.users)
    return not b.users and not h.users and all(
        r.target is torch.ops.aten.sub.Tensor and set(r.args) == {q_idx, kv_idx} and not r.kwargs for r in readers)


@functools.lru_cache(maxsize=256)
def window_of(mask_mod: TracedMod, seqlen_q: int, seqlen_k: int) -> Optional[tuple]:
    """(window_left, window_right) as `flash_attn_func` takes them (None: unbounded; bottom-right aligned) that
    show exactly the keys `mask_mod` shows at these lengths, or None where the mask is no such window."""
    gm = mask_mod.graph
    if mask_mod.captured or not _reads_only_difference(gm) or min(seqlen_q, seqlen_k) < 1:
        return None
    difference = torch.arange(1 - seqlen_k, seqlen_q, dtype=torch.int32)  # every q_idx - kv_idx of the shapes
    q_idx = difference.clamp(min=0)
    zeros = torch.zeros_like(difference)
    try:
        visible = gm(zeros, zeros, q_idx, q_idx - difference).expand_as(difference)
    except RuntimeError:  # an op that does not take a vector of positions: keep the mask_mod
        return None
    shown = visible.nonzero().flatten()
    if shown.numel() == 0 or shown.numel() != shown[-1] - shown[0] + 1:
        return None
    lowest, highest = int(difference[shown[0]]), int(difference[shown[-1]])
    diagonal = seqlen_k - seqlen_q
    left = None if highest == seqlen_q - 1 else highest + diagonal
    right = None if lowest == 1 - seqlen_k else -diagonal - lowest
    if (left is not None and left < 0) or (right is not None and right < 0):
        return None  # the window would not hold its own diagonal, which the kernels' window always does
    return left, right


def _narrower(a: Optional[int], b: Optional[int]) -> Optional[int]:
    return b if a is None else a if b is None else min(a, b)


def as_window(opts, seqlen_q: int, seqlen_k: int):
    """`opts` with a band mask_mod replaced by its window, intersected with the call's own window; `opts` as they
    are when the mask_mod is no band or a block mask comes with it (the blocks may hide more)."""
    if opts.mask_mod is None or opts.block_mask is not None:
        return opts
    band = window_of(trace_mask_mod(opts.mask_mod), seqlen_q, seqlen_k)
    if band is None:
        return opts
    return replace(opts, mask_mod=None, window_left=_narrower(band[0], opts.window_left),
                   window_right=_narrower(band[1], opts.window_right))
