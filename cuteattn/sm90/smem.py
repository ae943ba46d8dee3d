"""Swizzled shared-memory layouts for wgmma operands, the transposed views that let one tile serve
as a K-major operand of one GEMM and an MN-major operand of another, and stores of wgmma results into them."""

import cutlass.cute as cute
from cutlass.cute.nvgpu import warpgroup
from cutlass.cute.nvgpu.warp import StMatrix8x8x16bOp
from cutlass.cute.nvgpu.warpgroup import SmemLayoutAtomKind

_ATOMS = {1024: "SW128", 512: "SW64", 256: "SW32", 128: "INTER"}


def operand_layout(dtype, rows: int, cols: int, stages: int, k_major: bool, slice_cols: int = 0):
    """A swizzled (rows, cols, stages) layout: cols contiguous if k_major, else rows.

    The swizzle is the widest whose atom divides the contiguous extent, and `slice_cols` too if given, so
    that a slice of that many columns starts on an atom (a wgmma descriptor cannot start inside one).
    """
    extent = cols if k_major else rows
    bits = [extent * dtype.width] + ([slice_cols * dtype.width] if slice_cols else [])
    swizzle = next(b for b in _ATOMS if all(x % b == 0 for x in bits))
    kind = getattr(SmemLayoutAtomKind, ("K_" if k_major else "MN_") + _ATOMS[swizzle])
    atom = warpgroup.make_smem_layout_atom(kind, dtype)
    return cute.tile_to_shape(atom, (rows, cols, stages), order=(0, 1, 2) if k_major else (1, 0, 2))


def one_stage(layout):
    return cute.slice_(layout, (None, None, 0))


def transposed(t: cute.Tensor) -> cute.Tensor:
    """(rows, cols, ...) -> (cols, rows, ...): the same bytes; a K-major operand tile read as MN-major."""
    modes = list(range(cute.rank(t)))
    modes[0], modes[1] = 1, 0
    return cute.make_tensor(t.iterator, cute.select(t.layout, mode=modes))


def accumulator_store(dtype, tiled_mma: cute.TiledMma, tidx, transpose: bool = False):
    """(copy, its slice for thread `tidx`): a tile in `tiled_mma`'s accumulator layout, converted to `dtype`
    (16-bit), into shared memory by stmatrix, four 8x8 tiles a warp per instruction; `transpose`: into a tile
    whose rows are contiguous (stmatrix.trans)."""
    store = cute.make_tiled_copy_C(cute.make_copy_atom(StMatrix8x8x16bOp(transpose, 4), dtype), tiled_mma)
    return store, store.get_slice(tidx)
