"""Values NVVM must keep rather than recompute.

NVVM rematerializes cheap values inside a mainloop to shorten live ranges: a wgmma descriptor from the shared
memory base, an address from `tid.x` (an S2R and its IMADs, every step). A value passed through an inline-asm move
is opaque to it, so it stays computed once; ptxas still sees through the move (a uniform value stays uniform).
"""

from cutlass import Int32, Int64
from cutlass._mlir.dialects import llvm
from cutlass.cutlass_dsl import T, dsl_user_op

_MOVES = {Int32: (T.i32, "mov.b32 $0, $1;", "=r,r"), Int64: (T.i64, "mov.b64 $0, $1;", "=l,l")}


@dsl_user_op
def opaque(x, *, loc=None, ip=None):
    """x (an Int32 or Int64) through a move NVVM cannot see into."""
    kind = type(x)
    result_type, asm, constraints = _MOVES[kind]
    return kind(llvm.inline_asm(result_type(), [x.ir_value(loc=loc, ip=ip)], asm, constraints,
                                has_side_effects=False, is_align_stack=False, asm_dialect=llvm.AsmDialect.AD_ATT,
                                loc=loc, ip=ip))
