"""Register views of warpgroup-MMA accumulators, shared by the kernels.

A wgmma accumulator fragment of an (M, N) tile holds, per thread, values indexed
((col_pair, row_half, col_block), mma_m, mma_n): two neighbouring columns, two rows eight apart, and one
such group per 8-column block.
"""

import cutlass
import cutlass.cute as cute
from cutlass import Float32, Int32
from cutlass._mlir.dialects import llvm
from cutlass.cutlass_dsl import T, dsl_user_op


def rowcol(t: cute.Tensor) -> cute.Tensor:
    """The same registers indexed (row, col): rows (row_half, mma_m), cols (col_pair, col_block, mma_n)."""
    (pair, half, blocks), mma_m, mma_n = t.layout.shape
    (d_pair, d_half, d_blocks), d_m, d_n = t.layout.stride
    layout = cute.make_layout(((half, mma_m), (pair, blocks, mma_n)),
                              stride=((d_half, d_m), (d_pair, d_blocks, d_n)))
    return cute.make_tensor(t.iterator, layout)


def as_a_operand(t: cute.Tensor) -> cute.Tensor:
    """An (M, N) accumulator read as the register A operand of a wgmma with K = N.

    Two neighbouring 8-column blocks of the accumulator are exactly one 16-wide K block of the A fragment,
    so this only regroups the column blocks in pairs: ((pair, half, 2), mma_m, blocks / 2).
    """
    (pair, half, blocks), mma_m, mma_n = t.layout.shape
    (d_pair, d_half, d_blocks), d_m, d_n = t.layout.stride
    assert mma_n == 1 and blocks % 2 == 0
    layout = cute.make_layout(((pair, half, 2), mma_m, blocks // 2),
                              stride=((d_pair, d_half, d_blocks), d_m, 2 * d_blocks))
    return cute.make_tensor(t.iterator, layout)


_CVT_X2 = {cutlass.BFloat16: "cvt.rn.bf16x2.f32 $0, $2, $1;", cutlass.Float16: "cvt.rn.f16x2.f32 $0, $2, $1;"}


@dsl_user_op
def _cvt_pair(lo: Float32, hi: Float32, dtype, *, loc=None, ip=None) -> Int32:
    return Int32(llvm.inline_asm(
        T.i32(), [Float32(lo).ir_value(loc=loc, ip=ip), Float32(hi).ir_value(loc=loc, ip=ip)], _CVT_X2[dtype],
        "=r,f,f", has_side_effects=False, is_align_stack=False, asm_dialect=llvm.AsmDialect.AD_ATT, loc=loc, ip=ip))


@cute.jit
def convert(src: cute.Tensor, dst: cute.Tensor):
    """dst = src in dst's 16-bit type, two elements per instruction (both tensors compact, same layout).

    An opaque instruction: LLVM folds an ordinary fptrunc that feeds a loop-carried value past the loop's
    phi, which keeps the fp32 values alive across the back edge instead of the packed halves.
    """
    packed = cute.recast_tensor(dst, Int32)
    for i in cutlass.range_constexpr(cute.size(packed)):
        packed[i] = _cvt_pair(src[2 * i], src[2 * i + 1], dst.element_type)
