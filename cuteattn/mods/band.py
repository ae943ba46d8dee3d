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

from cuteattn.mods.trace import TracedMod, outputs_of, trace_mask_mod


aten = torch.ops.aten
_SIGN = {aten.add.Tensor: 1, aten.add.Scalar: 1, aten.sub.Tensor: -1, aten.sub.Scalar: -1}
_COMPARES = {getattr(aten, op).Tensor for op in ("ge", "gt", "le", "lt", "eq", "ne")} | {
    getattr(aten, op).Scalar for op in ("ge", "gt", "le", "lt", "eq", "ne")}
DIFFERENCE = "difference"  # a node that is some function of q_idx - kv_idx alone


def _reads_only_difference(gm: torch.fx.GraphModule) -> bool:
    """Whether the graph's result depends on the positions only through q_idx - kv_idx. Each node's dependence
    is tracked as the coefficients (of q_idx, of kv_idx) of an affine form, through additions and subtractions,
    and a comparison of two forms whose difference is a multiple of q_idx - kv_idx, or any op on such a form, is
    a function of the difference alone; any other reading of the positions (q_idx * kv_idx, doc[q_idx], b, h)
    says no. `q_idx + offset >= kv_idx` qualifies."""
    b, h, q_idx, kv_idx = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if b.users or h.users:
        return False
    forms = {q_idx: (1, 0), kv_idx: (0, 1)}

    def of_difference(form) -> bool:
        return form == DIFFERENCE or form[0] == -form[1]

    for node in gm.graph.nodes:
        if node.op != "call_function":
            continue
        inputs = [forms.get(a, (0, 0)) for a in node.all_input_nodes]
        if all(f == (0, 0) for f in inputs):
            continue
        affine = DIFFERENCE not in inputs and not node.kwargs
        if affine and node.target in _SIGN:
            first, second = (forms.get(a, (0, 0)) if isinstance(a, torch.fx.Node) else (0, 0) for a in node.args)
            sign = _SIGN[node.target]
            forms[node] = (first[0] + sign * second[0], first[1] + sign * second[1])
        elif affine and node.target is aten.neg.default:
            forms[node] = (-inputs[0][0], -inputs[0][1])
        elif affine and node.target in _COMPARES and len(inputs) <= 2:
            first, second = (forms.get(a, (0, 0)) if isinstance(a, torch.fx.Node) else (0, 0) for a in node.args)
            if (first[0] - second[0]) != -(first[1] - second[1]):
                return False
            forms[node] = DIFFERENCE
        elif all(of_difference(f) for f in inputs):
            forms[node] = DIFFERENCE
        else:
            return False
    result = outputs_of(gm)[0]
    return not isinstance(result, torch.fx.Node) or of_difference(forms.get(result, (0, 0)))


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
