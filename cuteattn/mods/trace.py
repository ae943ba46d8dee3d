"""FlexAttention mods captured as graphs of ATen operations on one score.

A mod is traced once per function object with PyTorch's `make_fx` on 0-d tensors: the score (fp32) and
b, h, q_idx, kv_idx (int32), as FlexAttention calls it. Tensors the function reads from its closure or
globals become `get_attr` nodes; they are the mod's captured tensors, passed to the kernels at run time.
A score_mod is traced a second time through `torch.autograd.grad`, which gives the backward its
derivative with respect to the score and the gradients of captured tensors that require grad.

A function is retraced when its closure cells change; the globals it reads are read at the first trace.
"""

from __future__ import annotations

import linecache
import sys
import weakref
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
from torch.fx.experimental.proxy_tensor import make_fx
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from cuteattn.mods.ops import OP_NAMES, SUPPORTED, Unsupported

aten = torch.ops.aten

INDEX_NAMES = ("b", "h", "q_idx", "kv_idx")


class _GetItemAsIndex(TorchFunctionMode):
    """`t[h, q_idx]` with 0-d index tensors as one aten.index, not a Python int read from the tensor."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is torch.Tensor.__getitem__:
            tensor, index = args
            index = index if isinstance(index, tuple) else (index,)
            if all(isinstance(i, (torch.Tensor, int)) and not isinstance(i, bool) for i in index):
                index = [i if isinstance(i, torch.Tensor) else torch.tensor(i, dtype=torch.int32) for i in index]
                return torch.ops.aten.index.Tensor(tensor, index)
        return func(*args, **(kwargs or {}))


class _CheckOps(TorchDispatchMode):
    """Raise `Unsupported` at the first operation the kernels cannot lower, naming the user's line."""

    def __init__(self, fn: Callable, what: str):
        super().__init__()
        self.fn, self.what = fn, what

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func not in SUPPORTED:
            raise Unsupported(f"{self.what} uses {func}, which cuteattn cannot compile into its kernels"
                              f"{_user_line(self.fn)}; supported: {', '.join(OP_NAMES)} and indexing captured "
                              f"tensors with b, h, q_idx, kv_idx")
        return func(*args, **(kwargs or {}))


def _user_line(fn: Callable) -> str:
    """' (file:line: source)' of the innermost frame in the user's function's file, or ''."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return ""
    frame = sys._getframe()
    while frame is not None:
        if frame.f_code.co_filename == code.co_filename:
            line = linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip()
            return f" (at {frame.f_code.co_filename}:{frame.f_lineno}: {line})"
        frame = frame.f_back
    return ""


def _scalar_inputs(with_score: bool) -> list[torch.Tensor]:
    indices = [torch.zeros((), dtype=torch.int32) for _ in INDEX_NAMES]
    return [torch.zeros((), dtype=torch.float32), *indices] if with_score else indices


@dataclass(frozen=True, eq=False)
class TracedMod:
    """A traced mod. `graph` maps (score,) b, h, q_idx, kv_idx to the new score or the visibility;
    `grad_graph` (score mods) maps score, b, h, q_idx, kv_idx, grad to (d score, d captured that require
    grad...). Equal keys generate equal code."""

    kind: str  # "score_mod" or "mask_mod"
    graph: torch.fx.GraphModule
    grad_graph: Optional[torch.fx.GraphModule]
    captured: tuple  # the tensors the graphs read, in the order the kernels take them
    grads_of: tuple  # indices into `captured` of the tensors whose gradients `grad_graph` returns after d score
    key: tuple = field(repr=False)

    def __hash__(self):
        return hash(self.key)

    def __eq__(self, other):
        return isinstance(other, TracedMod) and self.key == other.key

    @property
    def score_grad_is_identity(self) -> bool:
        """d new_score / d score == 1: the mod adds to the score, the backward needs no factor."""
        grad_in = [n for n in self.grad_graph.graph.nodes if n.op == "placeholder"][-1]
        return outputs_of(self.grad_graph)[0] is grad_in

    @property
    def derivative_reads_score(self) -> bool:
        """Whether d new_score / d score depends on the score (`tanh(score)` does, `score * scale[h]` not)."""
        score_in = next(n for n in self.grad_graph.graph.nodes if n.op == "placeholder")
        return score_in in needed_by(outputs_of(self.grad_graph)[:1])

    @property
    def grads_read_score(self) -> bool:
        """Whether the gradients of captured tensors depend on the score (`score * scale[h]` does)."""
        score_in = next(n for n in self.grad_graph.graph.nodes if n.op == "placeholder")
        return score_in in needed_by(outputs_of(self.grad_graph)[1:])

    def captured_args(self, device: torch.device) -> list[torch.Tensor]:
        """The captured tensors as the kernels take them: on `device`, at least 1-d, bool as uint8."""
        args = []
        for t in self.captured:
            if t.device.type != device.type or (device.index is not None and t.device.index != device.index):
                raise ValueError(f"the {self.kind} reads a tensor of shape {tuple(t.shape)} on {t.device}; "
                                 f"it must be on {device}, the device of q")
            if t.numel() >= 1 << 31:
                raise ValueError(f"the {self.kind} reads a tensor of {t.numel()} elements; captured tensors must "
                                 f"have fewer than 2**31 (the kernels index them with 32-bit arithmetic)")
            t = t.detach().reshape(1) if t.dim() == 0 else t.detach()
            if t.stride(-1) != 1:  # the kernels take rows of stride 1
                t = t.contiguous()
            args.append(t.view(torch.uint8) if t.dtype == torch.bool else t)
        return args


def outputs_of(gm: torch.fx.GraphModule) -> list:
    """The nodes (or constants) a graph returns, as a list."""
    out = next(n for n in gm.graph.nodes if n.op == "output").args[0]
    return list(out) if isinstance(out, (tuple, list)) else [out]


def needed_by(outputs) -> set:
    """The nodes the given outputs depend on, themselves included."""
    needed, stack = set(), list(outputs)
    while stack:
        node = stack.pop()
        if isinstance(node, torch.fx.Node) and node not in needed:
            needed.add(node)
            stack.extend(node.all_input_nodes)
    return needed


def position_difference(gm: torch.fx.GraphModule, lead: int) -> Optional[torch.fx.Node]:
    """The node q_idx - kv_idx (or kv_idx - q_idx) when nothing else in `gm` reads either position, so that
    the graph depends on the positions only through their difference; else None. `lead`: the inputs before b."""
    inputs = [n for n in gm.graph.nodes if n.op == "placeholder"]
    q_idx, kv_idx = inputs[lead + 2], inputs[lead + 3]
    readers = set(q_idx.users) | set(kv_idx.users)
    if len(readers) != 1:
        return None
    (node,) = readers
    is_difference = node.target is torch.ops.aten.sub.Tensor and set(node.args) == {q_idx, kv_idx}
    return node if is_difference and not node.kwargs else None


_FLIPPED = {aten.ge.Tensor: (aten.ge.Scalar, aten.le.Scalar), aten.gt.Tensor: (aten.gt.Scalar, aten.lt.Scalar),
            aten.le.Tensor: (aten.le.Scalar, aten.ge.Scalar), aten.lt.Tensor: (aten.lt.Scalar, aten.gt.Scalar),
            aten.eq.Tensor: (aten.eq.Scalar, aten.eq.Scalar), aten.ne.Tensor: (aten.ne.Scalar, aten.ne.Scalar)}


def _compare_by_difference(gm: torch.fx.GraphModule, lead: int):
    """Rewrite each comparison of q_idx with kv_idx (either way round) as one of q_idx - kv_idx with 0, sharing
    one subtraction, where the positions are read by nothing else: a mask such as
    `(q_idx >= kv_idx) & (q_idx - kv_idx <= w)` then reads them only through their difference
    (`position_difference`). Elsewhere (a document mask also reads doc[q_idx]) the graph stays as it is: the
    subtraction would cost one more instruction per score."""
    inputs = [n for n in gm.graph.nodes if n.op == "placeholder"]
    q_idx, kv_idx = inputs[lead + 2], inputs[lead + 3]
    for reader in set(q_idx.users) | set(kv_idx.users):
        compares = reader.target in _FLIPPED and set(reader.args) == {q_idx, kv_idx}
        subtracts = reader.target is aten.sub.Tensor and reader.args == (q_idx, kv_idx)
        if reader.kwargs or not (compares or subtracts):
            return
    difference = next((n for n in q_idx.users if n.target is aten.sub.Tensor and n.args == (q_idx, kv_idx)
                       and not n.kwargs), None)
    if difference is not None:
        inputs[-1].append(difference)  # ahead of every comparison that will read it
    for node in list(gm.graph.nodes):
        if node.target not in _FLIPPED or set(node.args) != {q_idx, kv_idx} or node.kwargs:
            continue
        if difference is None:
            with gm.graph.inserting_after(inputs[-1]):
                difference = gm.graph.call_function(aten.sub.Tensor, (q_idx, kv_idx))
            difference.meta["val"] = torch.zeros((), dtype=torch.int32)
        same, flipped = _FLIPPED[node.target]
        with gm.graph.inserting_before(node):
            compare = gm.graph.call_function(same if node.args[0] is q_idx else flipped, (difference, 0))
        compare.meta["val"] = node.meta["val"]
        node.replace_all_uses_with(compare)
        gm.graph.erase_node(node)
    gm.recompile()


def _constants(gm: torch.fx.GraphModule) -> list[torch.Tensor]:
    return [getattr(gm, n.target) for n in gm.graph.nodes if n.op == "get_attr"]


def is_inlined(t: torch.Tensor) -> bool:
    """A 0-d CPU tensor (`torch.tensor(0.5)` in the mod, or an int index) is a constant of the code."""
    return t.dim() == 0 and t.device.type == "cpu" and not t.requires_grad


def _trace(fn: Callable, inputs: list, what: str, user_fn: Callable) -> torch.fx.GraphModule:
    with _GetItemAsIndex():
        with _CheckOps(user_fn, what):
            fn(*inputs)  # an eager run first: the unsupported op is reported at the user's line
        return make_fx(fn)(*inputs)


def _check_result(gm: torch.fx.GraphModule, what: str, score: bool):
    for node in gm.graph.nodes:
        val = node.meta.get("val")
        if node.op == "call_function" and isinstance(val, torch.Tensor) and val.dim() != 0:
            raise TypeError(f"{what} must compute one value per score; {node.target} gives shape "
                            f"{tuple(val.shape)} (index captured tensors with b, h, q_idx, kv_idx)")
    result = outputs_of(gm)
    val = result[0].meta.get("val") if len(result) == 1 and isinstance(result[0], torch.fx.Node) else None
    if not isinstance(val, torch.Tensor):
        raise TypeError(f"{what} must return a tensor computed from its arguments; it returned {result}")
    if score and not val.is_floating_point():
        raise TypeError(f"score_mod must return a floating-point tensor (the new score); it returned a "
                        f"{val.dtype} tensor")
    if not score and val.dtype != torch.bool:
        raise TypeError(f"mask_mod must return a bool tensor (True: the key is visible); it returned a "
                        f"{val.dtype} tensor")


def _grad_graph(fn: Callable, captured: list[torch.Tensor]):
    """The vjp of a score_mod: (score, b, h, q_idx, kv_idx, grad) -> (d score, d captured...)."""
    with_grad = [t for t in captured if t.requires_grad]

    def vjp(score, b, h, q_idx, kv_idx, grad):
        with torch.enable_grad():
            score = score.detach().requires_grad_(True)
            new = fn(score, b, h, q_idx, kv_idx)
            return torch.autograd.grad(new, (score, *with_grad), grad, allow_unused=True, materialize_grads=True)

    gm = _trace(vjp, [*_scalar_inputs(True), torch.ones(())], "the derivative of score_mod", fn)
    return gm, tuple(next(i for i, c in enumerate(captured) if c is t) for t in with_grad)


def _key(kind: str, graphs, captured) -> tuple:
    graphs = [gm for gm in graphs if gm is not None]
    inlined = tuple(t.item() for gm in graphs for t in _constants(gm) if is_inlined(t))
    return (kind, *(gm.code for gm in graphs), tuple((t.dtype, t.dim()) for t in captured), inlined)


def trace_score_mod(fn: Callable) -> TracedMod:
    return _cached(fn, "score_mod")


def trace_mask_mod(fn: Callable) -> TracedMod:
    return _cached(fn, "mask_mod")


_traces: "weakref.WeakKeyDictionary[Callable, tuple]" = weakref.WeakKeyDictionary()


def _closure_ids(fn: Callable) -> tuple:
    cells = getattr(fn, "__closure__", None) or ()
    return tuple(id(c.cell_contents) for c in cells)


def _cached(fn: Callable, kind: str) -> TracedMod:
    try:
        hit = _traces.get(fn)
    except TypeError:  # not weak-referenceable: trace each time
        return _build(fn, kind)
    if hit is not None and hit[0] == (kind, _closure_ids(fn)):
        return hit[1]
    traced = _build(fn, kind)
    _traces[fn] = ((kind, _closure_ids(fn)), traced)
    return traced


def _add_constants(captured: list, gm: torch.fx.GraphModule):
    for t in _constants(gm):
        if not is_inlined(t) and not any(t is c for c in captured):
            captured.append(t)


def _build(fn: Callable, kind: str) -> TracedMod:
    score = kind == "score_mod"
    gm = _trace(fn, _scalar_inputs(score), kind, fn)
    _check_result(gm, kind, score)
    if not score:
        _compare_by_difference(gm, 0)
    captured = []
    _add_constants(captured, gm)
    grad_gm, grads_of = _grad_graph(fn, captured) if score else (None, ())
    if grad_gm is not None:
        _add_constants(captured, grad_gm)
    for t in captured:
        if t.dtype not in CAPTURED_DTYPES:
            raise TypeError(f"{kind} reads a {t.dtype} tensor of shape {tuple(t.shape)}; captured tensors may be "
                            f"{', '.join(str(d) for d in CAPTURED_DTYPES)}")
    return TracedMod(kind, gm, grad_gm, tuple(captured), grads_of, _key(kind, (gm, grad_gm), captured))


CAPTURED_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.int32, torch.int64, torch.bool)
