"""A mask_mod that keeps a band of diagonals runs as the kernels' own sliding window.

A mask_mod that reads the positions only through q_idx - kv_idx (not b, h, nor a captured tensor) and shows
one run of consecutive differences is a window: the kernels' window needs no block lists, and masks only the
blocks its edges cut, with one compare a score. The run is found by evaluating the traced mask on every
difference the call's lengths hold.

A mask_mod that ANDs such a band with other terms (a causal document mask: same document and q_idx >= kv_idx)
runs as the window and a mask_mod of the other terms: its block lists then cut only the tiles the other terms
cut (those that straddle two documents), and the diagonal's tiles take the window's compare, not the mask_mod.
"""

from __future__ import annotations

import functools
import weakref
from dataclasses import dataclass, replace
from typing import Callable, Optional

import torch

from cuteattn.mods.trace import TracedMod, is_inlined, outputs_of, trace_mask_mod


aten = torch.ops.aten
_SIGN = {aten.add.Tensor: 1, aten.add.Scalar: 1, aten.sub.Tensor: -1, aten.sub.Scalar: -1}
_COMPARES = {getattr(aten, op).Tensor for op in ("ge", "gt", "le", "lt", "eq", "ne")} | {
    getattr(aten, op).Scalar for op in ("ge", "gt", "le", "lt", "eq", "ne")}
DIFFERENCE = "difference"  # a node that is some function of q_idx - kv_idx alone
_ANDS = {aten.bitwise_and.Tensor, aten.logical_and.default}


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
    if mask_mod.captured:
        return None
    return _window_of_graph(mask_mod.graph, seqlen_q, seqlen_k)


@functools.lru_cache(maxsize=256)
def _window_of_graph(gm: torch.fx.GraphModule, seqlen_q: int, seqlen_k: int) -> Optional[tuple]:
    """`window_of` for a graph that captures no tensor."""
    if not _reads_only_difference(gm) or min(seqlen_q, seqlen_k) < 1:
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


@dataclass(frozen=True)
class BandSplit:
    """A mask_mod's AND-ed terms in two graphs of (b, h, q_idx, kv_idx): `band`, those that read the positions
    only through q_idx - kv_idx and capture no tensor, and `rest`, the others, a mask_mod of their own."""

    band: torch.fx.GraphModule
    rest: torch.fx.GraphModule


def _terms(node) -> list:
    """The terms that a chain of ANDs ending at `node` combines (node itself where it is no AND)."""
    if isinstance(node, torch.fx.Node) and node.target in _ANDS and not node.kwargs:
        return [term for arg in node.args for term in _terms(arg)]
    return [node]


def _and_of(gm: torch.fx.GraphModule, terms: list) -> torch.fx.GraphModule:
    """A graph module of gm's inputs that returns the AND of `terms` (nodes of gm), its tensors gm's own."""
    graph, copies = torch.fx.Graph(), {}
    graph.graph_copy(gm.graph, copies)
    result = copies[terms[0]]
    for term in terms[1:]:
        result = graph.call_function(aten.bitwise_and.Tensor, (result, copies[term]))
    graph.output(result)
    graph.eliminate_dead_code()
    return torch.fx.GraphModule(gm, graph)


def _captures(gm: torch.fx.GraphModule) -> bool:
    return any(n.op == "get_attr" and not is_inlined(getattr(gm, n.target)) for n in gm.graph.nodes)


def _split(traced: TracedMod) -> Optional[BandSplit]:
    gm = traced.graph
    terms = _terms(outputs_of(gm)[0])
    if not all(isinstance(term, torch.fx.Node) for term in terms):
        return None
    alone = {term: _and_of(gm, [term]) for term in terms}
    band = [term for term in terms if not _captures(alone[term]) and _reads_only_difference(alone[term])]
    rest = [term for term in terms if term not in band]
    if not band or not rest:
        return None
    return BandSplit(_and_of(gm, band), _and_of(gm, rest))


_splits: "weakref.WeakKeyDictionary[Callable, tuple]" = weakref.WeakKeyDictionary()


def band_split(mask_mod: Callable) -> Optional[BandSplit]:
    """The band and the other terms of `mask_mod`, or None where it ANDs no band with other terms. One split per
    trace of the function, so that later calls find the other terms' trace, kernels and block lists cached."""
    traced = trace_mask_mod(mask_mod)
    try:
        hit = _splits.get(mask_mod)
    except TypeError:  # not weak-referenceable: split each time
        return _split(traced)
    if hit is None or hit[0] is not traced:
        hit = _splits[mask_mod] = (traced, _split(traced))
    return hit[1]


def _narrower(a: Optional[int], b: Optional[int]) -> Optional[int]:
    return b if a is None else a if b is None else min(a, b)


def as_window(opts, seqlen_q: int, seqlen_k: int):
    """`opts` with a band mask_mod replaced by its window, or a band AND-ed with other terms by its window and a
    mask_mod of those terms, the window intersected with the call's own; `opts` as they are when the mask_mod holds
    no band or a block mask comes with it (the blocks may hide more)."""
    if opts.mask_mod is None or opts.block_mask is not None:
        return opts
    window, mask_mod = window_of(trace_mask_mod(opts.mask_mod), seqlen_q, seqlen_k), None
    if window is None:
        split = band_split(opts.mask_mod)
        if split is None:
            return opts
        window, mask_mod = _window_of_graph(split.band, seqlen_q, seqlen_k), split.rest
        if window is None:
            return opts
    return replace(opts, mask_mod=mask_mod, window_left=_narrower(window[0], opts.window_left),
                   window_right=_narrower(window[1], opts.window_right))
