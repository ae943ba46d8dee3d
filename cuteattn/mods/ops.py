"""The ATen operations a mod may use, each lowered to CuTe DSL scalar code.

Values are DSL scalars of three kinds, chosen from the dtype PyTorch traced: Float32 for every float
dtype, Int32 for every integer dtype (indices fit), Boolean for bool. Before an op runs its operands are
cast to the kind it computes in (`OPERAND_KIND`), so the DSL never has to promote mixed operands.
Transcendentals take their accurate forms, not fast-math: a mod's results must agree with PyTorch's, even
where a bucket edge turns a last-bit difference into a different table entry.
"""

from __future__ import annotations

import torch

import cutlass
import cutlass.cute as cute
from cutlass import Boolean, Float32, Int32

aten = torch.ops.aten


class Unsupported(TypeError):
    """A mod uses an operation the kernels cannot lower."""


def kind_of(dtype: torch.dtype):
    if dtype == torch.bool:
        return Boolean
    return Float32 if dtype.is_floating_point else Int32


def cast(value, kind):
    """`value` (a DSL scalar or a Python number) as `kind`."""
    if not isinstance(value, cutlass.Numeric):
        return kind(value)
    if type(value) is kind:
        return value
    if type(value) is Boolean:  # a 1-bit integer would sign-extend True to -1
        return cutlass.select_(value, kind(1), kind(0))
    return kind(value)


def _floor_div(a, b):
    if isinstance(a, Float32):
        return cute.math.floor(a / b)
    return a // b  # the DSL's integer // floors, as Python's and torch's do


def _remainder(a, b):  # torch.remainder: the sign of the divisor
    return a - _floor_div(a, b) * b


def _div_mode(a, b, rounding_mode=None):
    if rounding_mode == "floor":
        return _floor_div(a, b)
    if rounding_mode == "trunc":
        if isinstance(a, Float32):
            return cute.math.trunc(a / b)
        q = _floor_div(a, b)  # trunc = floor, plus one where the exact quotient is negative and not whole
        return q + cast((q < 0) & (q * b != a), Int32)
    return a / b


def _min(a, b):
    return cutlass.min(a, b)


def _max(a, b):
    return cutlass.max(a, b)


def _clamp(x, lo=None, hi=None):
    if lo is not None:
        x = _max(x, lo)
    if hi is not None:
        x = _min(x, hi)
    return x


def _sigmoid(x):
    return 1.0 / (1.0 + cute.math.exp(-x))


def _logical_not(x):
    return x == Boolean(False)


def _bitwise_not(x):
    return _logical_not(x) if isinstance(x, Boolean) else ~x


def _sign(x):
    zero = type(x)(0)
    return cast(x > zero, type(x)) - cast(x < zero, type(x))


def _pow(x, y):
    if isinstance(y, (int, float)) and float(y) == 2.0:
        return x * x
    if isinstance(y, (int, float)) and float(y) == 0.5:
        return cute.math.sqrt(x)
    return cute.math.exp2(cast(y, Float32) * cute.math.log2(x))


def _round(x):
    return cute.math.roundeven(x)


# How an op's operands are cast: "out" to the node's own kind, "float" to Float32, "bool" to Boolean,
# "promote" to the kind of the promoted input dtypes (comparisons); "select" ops return (cond, a, b).
OPERAND_KIND = {}
LOWERINGS = {}


def _register(kind, fn, *ops):
    for op in ops:
        LOWERINGS[op] = fn
        OPERAND_KIND[op] = kind


_register("out", lambda a, b, alpha=1: a + b * alpha if alpha != 1 else a + b, aten.add.Tensor, aten.add.Scalar)
_register("out", lambda a, b, alpha=1: a - b * alpha if alpha != 1 else a - b, aten.sub.Tensor, aten.sub.Scalar)
_register("out", lambda a, b, alpha=1: b - a * alpha if alpha != 1 else b - a, aten.rsub.Tensor, aten.rsub.Scalar)
_register("out", lambda a, b: a * b, aten.mul.Tensor, aten.mul.Scalar)
_register("float", lambda a, b: a / b, aten.div.Tensor, aten.div.Scalar)
_register("out", _div_mode, aten.div.Tensor_mode, aten.div.Scalar_mode)
_register("out", _floor_div, aten.floor_divide.default, aten.floor_divide.Scalar)
_register("out", _remainder, aten.remainder.Tensor, aten.remainder.Scalar)
_register("out", lambda a: -a, aten.neg.default)
_register("out", lambda a: cute.math.abs(a) if isinstance(a, Float32) else _max(a, -a), aten.abs.default)
_register("out", _sign, aten.sign.default, aten.sgn.default)
_register("out", _clamp, aten.clamp.default, aten.clamp.Tensor)
_register("out", lambda x, lo: _max(x, lo), aten.clamp_min.default, aten.clamp_min.Tensor)
_register("out", lambda x, hi: _min(x, hi), aten.clamp_max.default, aten.clamp_max.Tensor)
_register("out", _min, aten.minimum.default)
_register("out", _max, aten.maximum.default)
for _name in ("exp", "exp2", "log", "log2", "log1p", "tanh", "sqrt", "rsqrt", "sin", "cos", "floor", "ceil", "trunc"):
    _register("float", getattr(cute.math, _name), getattr(aten, _name).default)
_register("float", _sigmoid, aten.sigmoid.default)
_register("float", _round, aten.round.default)
_register("float", _pow, aten.pow.Tensor_Scalar, aten.pow.Tensor_Tensor)
_register("float", lambda grad, y: grad * (1.0 - y * y), aten.tanh_backward.default)  # y = tanh(x)
_register("float", lambda grad, y: grad * y * (1.0 - y), aten.sigmoid_backward.default)
for _op, _fn in ((aten.eq, lambda a, b: a == b), (aten.ne, lambda a, b: a != b), (aten.lt, lambda a, b: a < b),
                 (aten.le, lambda a, b: a <= b), (aten.gt, lambda a, b: a > b), (aten.ge, lambda a, b: a >= b)):
    _register("promote", _fn, _op.Tensor, _op.Scalar)
_register("out", lambda a, b: a & b, aten.bitwise_and.Tensor, aten.bitwise_and.Scalar)
_register("out", lambda a, b: a | b, aten.bitwise_or.Tensor, aten.bitwise_or.Scalar)
_register("out", lambda a, b: a ^ b, aten.bitwise_xor.Tensor, aten.bitwise_xor.Scalar)
_register("out", _bitwise_not, aten.bitwise_not.default)
_register("bool", lambda a, b: a & b, aten.logical_and.default)
_register("bool", lambda a, b: a | b, aten.logical_or.default)
_register("bool", lambda a, b: a != b, aten.logical_xor.default)
_register("bool", _logical_not, aten.logical_not.default)
_register("select", lambda cond, a, b: (cond, a, b), aten.where.self, aten.where.ScalarSelf,
          aten.where.ScalarOther, aten.where.Scalar)
_register("select", lambda x, mask, value: (mask, value, x), aten.masked_fill.Scalar, aten.masked_fill.Tensor)
for _op in (aten._to_copy.default, aten.detach.default, aten.clone.default, aten.alias.default,
            aten.lift_fresh_copy.default, aten.lift_fresh.default, aten.view.default, aten._unsafe_view.default,
            aten.expand.default, aten.squeeze.default, aten.unsqueeze.default, aten.reshape.default):
    _register("out", lambda x, *args, **kwargs: x, _op)
_register("out", lambda x, *args, **kwargs: x, aten.scalar_tensor.default)
_register("out", lambda x, *args, **kwargs: cast(1, type(x)) if isinstance(x, cutlass.Numeric) else 1,
          aten.ones_like.default)
_register("out", lambda x, *args, **kwargs: cast(0, type(x)) if isinstance(x, cutlass.Numeric) else 0,
          aten.zeros_like.default)


def _in_place(op):
    """aten.mul_.Tensor for aten.mul.Tensor, or None."""
    packet = getattr(aten, op.overloadpacket.__name__ + "_", None)
    return getattr(packet, op._overloadname, None) if packet is not None else None


# Autograd's own backward formulas write in place (masked_fill_, logical_and_): the same lowering, and the
# evaluator rebinds the mutated input.
IN_PLACE = {inplace: op for op in list(LOWERINGS) if (inplace := _in_place(op)) is not None}
for _inplace, _op in IN_PLACE.items():
    _register(OPERAND_KIND[_op], LOWERINGS[_op], _inplace)

# Handled by the evaluator itself: reading a captured tensor, and the gradient of one (a scatter-add).
STRUCTURAL = (aten.index.Tensor, aten.index_put.default, aten.new_zeros.default)
SUPPORTED = frozenset((*LOWERINGS, *STRUCTURAL))
OP_NAMES = sorted({op.overloadpacket.__name__ for op in LOWERINGS if not op.overloadpacket.__name__.startswith("_")})
