"""Issuing warpgroup MMAs (wgmma): one asynchronous commit group per GEMM, shared-memory operands by
descriptor."""

import cutlass
import cutlass.cute as cute
from cutlass import Int64
from cutlass._mlir.dialects import builtin, llvm
from cutlass.cutlass_dsl import T, dsl_user_op
from cutlass.cute.nvgpu import warpgroup


@cute.jit
def gemm(tiled_mma: cute.TiledMma, acc: cute.Tensor, a, b, zero_init: cutlass.Constexpr[bool]):
    """acc = a b (zero_init) or acc += a b, over the K blocks of the fragments a (M, K) and b (N, K); either
    may be a tuple of its K blocks (`pinned_k_blocks`).

    Asynchronous: the caller waits with `warpgroup.wait_group`, and leaves a register operand and acc alone
    until then. An accumulating call expects the tiled MMA's accumulate field set to True; zero_init sets the
    field on a copy, so that the caller's tiled MMA stays as it was (the DSL cannot carry a field changed in a
    loop or branch out of it).
    """
    if cutlass.const_expr(zero_init):
        tiled_mma = tiled_mma.with_()
        tiled_mma.set(warpgroup.Field.ACCUMULATE, False)
    warpgroup.fence()
    for k in cutlass.range_constexpr(len(b) if isinstance(b, tuple) else cute.size(b, mode=[2])):
        cute.gemm(tiled_mma, acc, _k_block(a, k), _k_block(b, k), acc)
        if cutlass.const_expr(zero_init):
            tiled_mma.set(warpgroup.Field.ACCUMULATE, True)
    warpgroup.commit_group()


def _k_block(fragment, k: int):
    return fragment[k] if isinstance(fragment, tuple) else fragment[None, None, k]


@dsl_user_op
def _opaque(x: Int64, *, loc=None, ip=None) -> Int64:
    """x through an inline-asm move: NVVM cannot see into it, so cannot recompute the value past it; ptxas still
    does (a uniform value stays uniform)."""
    return Int64(llvm.inline_asm(T.i64(), [x.ir_value(loc=loc, ip=ip)], "mov.b64 $0, $1;", "=l,l",
                                 has_side_effects=False, is_align_stack=False, asm_dialect=llvm.AsmDialect.AD_ATT,
                                 loc=loc, ip=ip))


def pinned(fragment: cute.Tensor) -> cute.Tensor:
    """A shared-memory operand fragment whose descriptor is computed here, once: the loops add only stage and
    K-block offsets to it.

    NVVM rematerializes a descriptor at each use from the shared-memory base (add, shift, mask, or: about
    three uniform instructions per operand per step of a mainloop); an `_opaque` copy is a value it must keep.
    """
    as_int = Int64(builtin.unrealized_conversion_cast([Int64.mlir_type], [fragment.iterator]))
    desc = builtin.unrealized_conversion_cast([fragment.iterator.type], [_opaque(as_int).ir_value()])
    return cute.make_tensor(desc, fragment.layout)


def pinned_k_blocks(fragment: cute.Tensor) -> tuple:
    """The K blocks of a fragment (M or N, K) read by every step, each with its own descriptor computed here:
    the steps add nothing. Each takes two uniform registers for the whole loop."""
    return tuple(pinned(fragment[None, None, k]) for k in range(cute.size(fragment, mode=[2])))
