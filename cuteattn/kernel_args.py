"""Compiling CuTe DSL kernels to take torch tensors directly, their compile-time stand-ins, and the groups of
arguments that a kernel's `cta_body` takes as one (frozen dataclasses; a None field compiles away).

Kernels compile with TVM-FFI: the compiled function takes torch tensors and Python scalars as they are and
launches on torch's current stream, so a call costs little host time beyond the launch itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Type

import torch

import cutlass
import cutlass.cute as cute
from cutlass import Float32, Int32
from cutlass.cute.runtime import make_fake_stream, make_fake_tensor

TORCH_TO_CUTE = {torch.bfloat16: cutlass.BFloat16, torch.float16: cutlass.Float16, torch.float32: cutlass.Float32}
ALIGN_BYTES = 16  # TMA and 16-byte vector loads


def fake_tensor(dtype: Type[cutlass.Numeric], rank: int, aligned: bool = True, small: bool = False):
    """A device tensor of dynamic shape and strides, last stride 1; if `aligned`, 16-byte aligned rows; if
    `small` (under 2^31 elements), 32-bit strides, so indexing it costs 32-bit arithmetic."""
    elems = ALIGN_BYTES * 8 // dtype.width if aligned else 1
    shape = tuple(cute.sym_int() for _ in range(rank))
    stride_int = cute.sym_int if small else cute.sym_int64
    stride = (*(stride_int(divisibility=elems) for _ in range(rank - 1)), 1)
    return make_fake_tensor(dtype, shape, stride=stride, assumed_align=ALIGN_BYTES if aligned else None)


def compile_kernel(kernel, *args):
    """`kernel` compiled for fake `args`, then a stream argument that the call takes from torch."""
    return cute.compile(kernel, *args, make_fake_stream(use_tvm_ffi_env_stream=True), options="--enable-tvm-ffi")


def launch(cta_body, grid, threads: int, stream, smem: int = 0, owner=None, **options):
    """Launch a `@cute.kernel` call on a grid of 1-D blocks of `threads` threads. A kernel whose shared memory
    outgrows the architecture's is refused at compile time, naming `owner` (its frozen config)."""
    capacity = cutlass.memory.get_smem_capacity_in_bytes()
    if smem > capacity:
        raise ValueError(f"{owner or 'the kernel'} needs {smem} bytes of shared memory; this architecture has "
                         f"{capacity}: choose smaller tiles or fewer stages")
    cta_body.launch(grid=list(grid), block=[threads, 1, 1], smem=smem, stream=stream, **options)


def aligned_view(t: torch.Tensor) -> torch.Tensor:
    """`t` detached, with any size-1 dim given an aligned stride (it may carry any), as `fake_tensor` promises."""
    t = t.detach()
    elems = ALIGN_BYTES // t.element_size()
    if 1 not in t.shape[:-1] or all(s % elems == 0 for s in t.stride()[:-1]):
        return t
    return t.as_strided(t.shape, [elems if n == 1 and i < t.dim() - 1 else s
                                  for i, (n, s) in enumerate(zip(t.shape, t.stride()))])


@dataclass(frozen=True)
class ScoreArgs:
    """The runtime numbers of a kernel's scores, one argument of its `cta_body`."""

    scale_log2: Float32  # of the scores held: softmax_scale * log2(e), softcap * log2(e) with a softcap
    tanh_scale: Float32  # softmax_scale / softcap with a softcap
    score_scale: Float32  # with score_mod: held scores * score_scale are what the mod sees
    window_left: Int32  # with the window's left side bounded
    window_right: Int32  # with its right side bounded


@dataclass(frozen=True)
class BlockLists:
    """A mask_mod's block sparsity as a kernel reads it (`mods.block_sparsity`): each tile's count of blocks to
    visit and their entries, the tiles' launch order by work (`tile_scheduler.by_work`), and the backward's
    deterministic dQ turns of the entries; one argument of its `cta_body`, None without a mask_mod."""

    count: cute.Tensor
    entries: cute.Tensor
    order: Optional[cute.Tensor] = None
    turns: Optional[cute.Tensor] = None
