"""The dQ workspace of the sm90 backward: fp32 partial sums of dQ, added by every key block's CTA.

Each (batch, head, m_block) owns a contiguous chunk of tile_m * head_dim floats. Two consumer
warpgroups each compute half of dQ's columns as a wgmma accumulator; the chunk holds their registers in
fragment order, four at a time: thread t's registers 4g..4g+3 sit at ((g * 128) + t) * 4 of its
warpgroup's half. So the backward adds each group of four with one vector atomic, neighbouring lanes hit
neighbouring 16 bytes, and the postprocess reads the chunk back with the same tiled MMA.
"""

import cutlass
import cutlass.cute as cute
import cutlass.utils.hopper_helpers as sm90_utils
from cutlass import Float32
from cutlass.cute.nvgpu import OperandMajorMode

THREADS_PER_WARPGROUP = 128
WARPGROUPS = 2  # each takes half of dQ's columns
VECTOR = 4  # floats per atomic


def tiled_mma(dtype, tile_m: int, head_dim: int) -> cute.TiledMma:
    """dQ[:, half] = dS K[:, half]: dS (tile_m, keys) and K from shared memory, both MN-major."""
    return sm90_utils.make_trivial_tiled_mma(
        dtype, dtype, OperandMajorMode.MN, OperandMajorMode.MN, Float32, (1, 1, 1),
        tiler_mn=(tile_m, head_dim // WARPGROUPS))


def vectors(acc: cute.Tensor) -> cute.Tensor:
    """A thread's accumulator as (VECTOR, groups)."""
    return cute.make_tensor(acc.iterator, cute.make_layout((VECTOR, cute.size(acc) // VECTOR)))


def chunk(tile: cute.Tensor, acc: cute.Tensor, wg, wg_tidx) -> cute.Tensor:
    """The (VECTOR, groups) slots of one thread's accumulator in a (tile_m * head_dim,) workspace tile."""
    groups = cute.size(acc) // VECTOR
    base = (wg * groups * THREADS_PER_WARPGROUP + wg_tidx) * VECTOR
    layout = cute.make_layout((VECTOR, groups), stride=(1, THREADS_PER_WARPGROUP * VECTOR))
    return cute.make_tensor(tile.iterator + base, layout)


@cute.jit
def add(acc: cute.Tensor, tile: cute.Tensor, wg, wg_tidx):
    """Atomically add a warpgroup's dQ accumulator into its workspace tile."""
    src, dst = vectors(acc), chunk(tile, acc, wg, wg_tidx)
    for g in cutlass.range_constexpr(cute.size(src, mode=[1])):
        cute.arch.atomic_add(dst[None, g].iterator, src[None, g].load())
