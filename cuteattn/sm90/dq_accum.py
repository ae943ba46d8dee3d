"""The dQ workspace of the sm90 backward: fp32 partial sums of dQ, added by every key block's CTA.

Each (batch, head, m_block) owns a contiguous chunk of tile_m * head_dim floats. Two consumer
warpgroups each compute half of dQ's columns as a wgmma accumulator (of dQ^T where tile_m is no multiple
of 64), or `by_rows` half of its rows (tile_m 128: 64-row wgmmas over all columns, N twice as wide, so the
shared-memory operands are read half as often per FLOP); the chunk holds their registers in
fragment order, four at a time: thread t's registers 4g..4g+3 sit at ((g * 128) + t) * 4 of its
warpgroup's half. A consumer stores its half into shared memory in that order (neighbouring lanes write
neighbouring 16 bytes, no bank conflicts), and a writer warp adds the whole half into the workspace with one
bulk reduction, so the adds run on the copy engine while the consumer goes on. The postprocess reads the
chunk back with the same tiled MMA.
"""

import cutlass
import cutlass.cute as cute
import cutlass.utils.hopper_helpers as sm90_utils
from cutlass import Float32, Int32
from cutlass._mlir.dialects import llvm
from cutlass.cutlass_dsl import dsl_user_op
from cutlass.cute.nvgpu import OperandMajorMode

THREADS_PER_WARPGROUP = 128
WARPGROUPS = 2  # each takes half of dQ's columns
VECTOR = 4  # floats per 16-byte access


def swapped(tile_m: int) -> bool:
    """Whether dQ is computed transposed: a wgmma's M is a multiple of 64, and tile_m (80, say) may not be."""
    return tile_m % 64 != 0


def rows_split(tile_m: int) -> bool:
    """Whether the warpgroups can split dQ's rows: one 64-row wgmma each."""
    return tile_m == WARPGROUPS * 64


def tile(tile_m: int, head_dim: int, by_rows: bool = False) -> tuple:
    """(M, N) of a warpgroup's dQ accumulator: (tile_m, half), (half, tile_m) when swapped, (tile_m / 2,
    head_dim) by rows."""
    if by_rows:
        return (tile_m // WARPGROUPS, head_dim)
    half = head_dim // WARPGROUPS
    return (half, tile_m) if swapped(tile_m) else (tile_m, half)


def tiled_mma(dtype, tile_m: int, head_dim: int, by_rows: bool = False) -> cute.TiledMma:
    """dQ[:, half] = dS K[:, half], swapped dQ[:, half]^T = K[:, half]^T dS^T, or by rows dQ[half] = dS[half] K:
    dS (tile_m, keys) and K from shared memory, both MN-major either way; wgmmas of 64 rows tile a tile_m of
    128."""
    m, n = tile(tile_m, head_dim, by_rows)
    return sm90_utils.make_trivial_tiled_mma(
        dtype, dtype, OperandMajorMode.MN, OperandMajorMode.MN, Float32, (1, 1, 1), tiler_mn=(min(m, 64), n))


def half_size(tile_m: int, head_dim: int) -> int:
    """Floats of one warpgroup's half of a chunk."""
    return tile_m * head_dim // WARPGROUPS


def vectors(acc: cute.Tensor) -> cute.Tensor:
    """A thread's accumulator as (VECTOR, groups)."""
    return cute.make_tensor(acc.iterator, cute.make_layout((VECTOR, cute.size(acc) // VECTOR)))


def chunk(tile: cute.Tensor, acc: cute.Tensor, wg, wg_tidx) -> cute.Tensor:
    """The (VECTOR, groups) slots of one thread's accumulator in a (tile_m * head_dim,) chunk, in global or
    shared memory; the static strides keep the 16-byte alignment of each vector visible to the compiler."""
    groups = cute.size(acc) // VECTOR
    layout = cute.make_layout((VECTOR, groups, (THREADS_PER_WARPGROUP, WARPGROUPS)),
                              stride=(1, THREADS_PER_WARPGROUP * VECTOR,
                                      (VECTOR, groups * THREADS_PER_WARPGROUP * VECTOR)))
    return cute.make_tensor(tile.iterator, layout)[None, None, (wg_tidx, wg)]


@cute.jit
def store(acc: cute.Tensor, smem_chunk: cute.Tensor, wg, wg_tidx):
    """A warpgroup's dQ accumulator into its half of a chunk in shared memory."""
    src, dst = vectors(acc), chunk(smem_chunk, acc, wg, wg_tidx)
    for g in cutlass.range_constexpr(cute.size(src, mode=[1])):
        dst[None, g].store(src[None, g].load())


@dsl_user_op
def bulk_add(dst: cute.Pointer, src: cute.Pointer, num_bytes: int, *, loc=None, ip=None):
    """dst[i] += src[i] over num_bytes of fp32, global += shared, by the copy engine: asynchronous, in the
    issuing thread's bulk group (`cp_async_bulk_commit_group` / `cp_async_bulk_wait_group`)."""
    llvm.inline_asm(
        None,
        [dst.toint(loc=loc, ip=ip).ir_value(loc=loc, ip=ip), src.toint(loc=loc, ip=ip).ir_value(loc=loc, ip=ip),
         Int32(num_bytes).ir_value(loc=loc, ip=ip)],
        "cp.reduce.async.bulk.global.shared::cta.bulk_group.add.f32 [$0], [$1], $2;",
        "l,r,r",
        has_side_effects=True,
        is_align_stack=False,
        asm_dialect=llvm.AsmDialect.AD_ATT,
        loc=loc,
        ip=ip,
    )
