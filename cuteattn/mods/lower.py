"""A traced mod evaluated as CuTe DSL code on one score, inside a kernel.

`apply_score_mod`, `score_mod_derivative`, `apply_mask_mod` and `add_captured_grads` walk the traced graph
node by node, with the lowering of each ATen op from `cuteattn.mods.ops`; `hoist` evaluates ahead the nodes
that need only some of the inputs. The captured tensors arrive as a list of device
tensors, in `TracedMod.captured` order; a 0-d CPU tensor is a constant, inlined.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

import cutlass
import cutlass.cute as cute
from cutlass import Boolean, Float32, Int32

from cuteattn.mods.ops import IN_PLACE, LOWERINGS, OPERAND_KIND, cast, kind_of
from cuteattn.mods.trace import TracedMod, is_inlined, needed_by, outputs_of

aten = torch.ops.aten


@dataclass
class _Captured:
    """A captured tensor as a graph value: indexed, or read whole when 0-d."""

    tensor: cute.Tensor
    dtype: torch.dtype


@dataclass
class _Scatter:
    """A gradient of a captured tensor: values to add at indices."""

    adds: list  # [(indices, value)]


def _within(indices, shape) -> tuple:
    """Torch's indices into a tensor of `shape` (a negative one counts from the end), clamped into it: a
    score_mod sees the padding's positions, which may index past either end (their scores are masked)."""
    wrapped = (cutlass.select_(i < 0, i + n, i) for i, n in zip(indices, shape))
    return tuple(cutlass.max(cutlass.min(i, n - 1), 0) for i, n in zip(wrapped, shape))


def _load(t: _Captured, indices, kind):
    value = t.tensor[_within(indices, t.tensor.shape)] if indices else t.tensor[0]
    if t.dtype == torch.bool:
        return value != 0
    return cast(value, kind)


def _node_kind(node):
    return kind_of(node.meta["val"].dtype)


def _value_kind(arg):
    if isinstance(arg, torch.fx.Node):
        return _node_kind(arg)
    if isinstance(arg, bool):
        return Boolean
    return Float32 if isinstance(arg, float) else Int32


def _promoted(args):
    kinds = {_value_kind(a) for a in args if isinstance(a, (torch.fx.Node, bool, int, float))}
    for kind in (Float32, Int32, Boolean):
        if kind in kinds:
            return kind
    return Float32


def _evaluate(gm: torch.fx.GraphModule, traced: TracedMod, inputs, tensors, wanted, known=None):
    """The values of the output positions `wanted` of `gm` on DSL scalars `inputs`; `known`: nodes already
    evaluated (by `hoist`)."""
    outputs = outputs_of(gm)
    env = _run(gm, traced, inputs, tensors, needed_by([outputs[i] for i in wanted]), dict(known or {}))
    return [_value(outputs[i], env) for i in wanted]


def hoist(gm: torch.fx.GraphModule, traced: TracedMod, inputs, tensors, known=None) -> dict:
    """Evaluate the nodes of `gm` that need only the inputs given (None: not known yet), ahead of the rest:
    what depends on q_idx alone once per row, on kv_idx alone once per column, what does not depend on the
    score before the score exists. `known`: nodes already evaluated (given, they count as known even where
    their inputs are not); the result includes them."""
    missing = {n for n, value in zip((n for n in gm.graph.nodes if n.op == "placeholder"), inputs) if value is None}
    unknown = set(missing)
    for node in gm.graph.nodes:
        if node not in (known or {}) and any(i in unknown for i in node.all_input_nodes):
            unknown.add(node)
    ready = {n for n in needed_by(outputs_of(gm)) if n not in unknown}
    env = _run(gm, traced, inputs, tensors, ready, dict(known or {}))
    return {n: v for n, v in env.items() if n in ready and n.op != "placeholder"}


def _run(gm, traced, inputs, tensors, needed, env):
    placeholders = iter(inputs)
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            env[node] = next(placeholders)
        if node not in needed or node in env:
            continue
        if node.op == "get_attr":
            t = getattr(gm, node.target)
            if is_inlined(t):
                env[node] = cast(t.item(), kind_of(t.dtype))
            else:
                i = next(i for i, c in enumerate(traced.captured) if c is t)
                env[node] = _Captured(tensors[i], t.dtype)
        elif node.op == "call_function":
            env[node] = _call(node, env)
            if node.target in IN_PLACE:
                env[node.args[0]] = env[node]
    return env


def _value(arg, env):
    if isinstance(arg, torch.fx.Node):
        value = env[arg]
        return _load(value, [], _node_kind(arg)) if isinstance(value, _Captured) else value
    if isinstance(arg, (list, tuple)):
        return type(arg)(_value(a, env) for a in arg)
    return arg


def _call(node, env):
    op = node.target
    if op is aten.index.Tensor:
        base, indices = env[node.args[0]], [cast(_value(i, env), Int32) for i in node.args[1]]
        return _load(base, indices, _node_kind(node))
    if op in (aten.new_zeros.default, aten.zeros.default):
        return _Scatter([])
    if op in (aten.index_put.default, aten.index_put_.default):
        base, indices, values = env[node.args[0]], node.args[1], _value(node.args[2], env)
        return _Scatter(base.adds + [([cast(_value(i, env), Int32) for i in indices], cast(values, Float32))])
    args = [_value(a, env) for a in node.args]
    kwargs = {k: _value(v, env) for k, v in node.kwargs.items() if k not in ("dtype", "layout", "device",
                                                                             "pin_memory", "memory_format")}
    if op is aten.add.Tensor and any(isinstance(a, _Scatter) for a in args):
        return _Scatter(args[0].adds + args[1].adds)
    how = OPERAND_KIND[op]
    if how == "select":
        kind = _node_kind(node)
        cond, a, b = LOWERINGS[op](*args)
        return cast(cutlass.select_(cast(cond, Boolean), cast(a, kind), cast(b, kind)), kind)
    kind = {"out": _node_kind(node), "float": Float32, "bool": Boolean,
            "promote": _promoted(node.args)}[how]
    args = [cast(a, kind) if isinstance(a, (cutlass.Numeric, bool, int, float)) else a for a in args]
    return cast(LOWERINGS[op](*args, **kwargs), _node_kind(node))


def captured_kinds(traced: TracedMod):
    """The DSL element type of each captured tensor as the kernels take it."""
    from cuteattn.kernel_args import TORCH_TO_CUTE

    types = {torch.int32: Int32, torch.int64: cutlass.Int64, torch.bool: cutlass.Uint8, **TORCH_TO_CUTE}
    return [types[t.dtype] for t in traced.captured]


def apply_score_mod(traced: TracedMod, tensors, score, b, h, q_idx, kv_idx, known=None):
    """The new score (Float32)."""
    return cast(_evaluate(traced.graph, traced, [score, b, h, q_idx, kv_idx], tensors, [0], known)[0], Float32)


def score_mod_derivative(traced: TracedMod, tensors, score, b, h, q_idx, kv_idx, known=None):
    """d new_score / d score (Float32)."""
    inputs = [score, b, h, q_idx, kv_idx, Float32(1.0)]
    return cast(_evaluate(traced.grad_graph, traced, inputs, tensors, [0], known)[0], Float32)


def apply_mask_mod(traced: TracedMod, tensors, b, h, q_idx, kv_idx, known=None):
    """Whether the key is visible (Boolean)."""
    return cast(_evaluate(traced.graph, traced, [b, h, q_idx, kv_idx], tensors, [0], known)[0], Boolean)


def add_captured_grads(traced: TracedMod, tensors, grad_tensors, score, b, h, q_idx, kv_idx, grad):
    """Atomically add `grad` (d loss / d new_score) times d new_score / d captured into the fp32 gradient
    buffers, one per tensor of `traced.grads_of`."""
    wanted = list(range(1, 1 + len(traced.grads_of)))
    results = _evaluate(traced.grad_graph, traced, [score, b, h, q_idx, kv_idx, grad], tensors, wanted)
    for buffer, result in zip(grad_tensors, results):
        adds = result.adds if isinstance(result, _Scatter) else [([], cast(result, Float32))]
        for indices, value in adds:
            offset = cute.crd2idx(_within(indices, buffer.shape), buffer.layout) if indices else 0
            cute.arch.atomic_add((buffer.iterator + offset).llvm_ptr, value)
