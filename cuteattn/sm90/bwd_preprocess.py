"""Attention backward preprocess: dpsum = rowsum(dO * O) and lse in log2 units, for sm_90a.

One CTA takes `tile_m` consecutive query rows of one (batch, head). A row of head_dim_v elements is
read with 16-byte vector loads by `threads_per_row` neighbouring lanes, which then sum their fp32
partial dot products with warp shuffles.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Type

import cuda.bindings.driver as cuda
import torch

import cutlass
import cutlass.cute as cute
from cutlass import Float32, Int32, const_expr
from cutlass.cute.runtime import from_dlpack, make_fake_stream, make_fake_tensor

from cuteattn.compile_cache import get_or_compile
from cuteattn.registry import compile_target

LOG2_E = math.log2(math.e)
VECTOR_BYTES = 16

TORCH_TO_CUTE = {torch.bfloat16: cutlass.BFloat16, torch.float16: cutlass.Float16}


@dataclass(frozen=True)
class BwdPreprocess:
    dtype: Type[cutlass.Numeric]
    head_dim_v: int
    tile_m: int = 64
    num_threads: int = 128

    def __post_init__(self):
        assert self.head_dim_v % self.vector_size == 0, "head_dim_v must be a multiple of 8"
        assert self.num_threads % self.threads_per_row == 0
        assert self.tile_m % self.rows_per_pass == 0 and self.tile_m <= self.num_threads

    @property
    def vector_size(self) -> int:
        return VECTOR_BYTES * 8 // self.dtype.width

    @property
    def threads_per_row(self) -> int:
        """Largest power of two, at most a warp, that splits a row into whole vectors."""
        vectors = self.head_dim_v // self.vector_size
        return min(vectors & -vectors, cute.arch.WARP_SIZE)

    @property
    def rows_per_pass(self) -> int:
        return self.num_threads // self.threads_per_row

    @cute.jit
    def __call__(
        self,
        mO: cute.Tensor,
        mdO: cute.Tensor,
        mLSE: cute.Tensor,
        mdPsum: cute.Tensor,
        mLSElog2: cute.Tensor,
        stream: cuda.CUstream,
    ):
        # 16-byte loads need every row start 16-byte aligned: the host checks the strides.
        mO, mdO = [
            cute.make_tensor(
                t.iterator,
                cute.make_layout(
                    t.shape,
                    stride=(*(cute.assume(s, divby=self.vector_size) for s in t.stride[:3]), 1),
                ),
            )
            for t in (mO, mdO)
        ]
        batch, seqlen, heads, _ = mO.shape
        copy_atom = cute.make_copy_atom(
            cute.nvgpu.CopyUniversalOp(), self.dtype, num_bits_per_copy=VECTOR_BYTES * 8
        )
        tiled_copy = cute.make_tiled_copy_tv(
            copy_atom,
            cute.make_ordered_layout((self.rows_per_pass, self.threads_per_row), order=(1, 0)),
            cute.make_layout((1, self.vector_size)),
        )
        self.kernel(mO, mdO, mLSE, mdPsum, mLSElog2, tiled_copy).launch(
            grid=[cute.ceil_div(seqlen, self.tile_m), heads, batch],
            block=[self.num_threads, 1, 1],
            stream=stream,
        )

    @cute.kernel
    def kernel(
        self,
        mO: cute.Tensor,
        mdO: cute.Tensor,
        mLSE: cute.Tensor,
        mdPsum: cute.Tensor,
        mLSElog2: cute.Tensor,
        tiled_copy: cute.TiledCopy,
    ):
        tidx, _, _ = cute.arch.thread_idx()
        m_block, head, batch = cute.arch.block_idx()
        seqlen = mO.shape[1]
        tile = (self.tile_m, self.head_dim_v)

        gO = cute.local_tile(mO[batch, None, head, None], tile, (m_block, 0))
        gdO = cute.local_tile(mdO[batch, None, head, None], tile, (m_block, 0))
        cO = cute.local_tile(cute.make_identity_tensor((seqlen, self.head_dim_v)), tile, (m_block, 0))

        thr_copy = tiled_copy.get_slice(tidx)
        tOgO = thr_copy.partition_S(gO)
        tOgdO = thr_copy.partition_S(gdO)
        tOcO = thr_copy.partition_S(cO)
        tOrO = cute.make_fragment_like(tOgO)
        tOrdO = cute.make_fragment_like(tOgdO)
        tOrO.fill(0.0)
        tOrdO.fill(0.0)
        for m in cutlass.range_constexpr(cute.size(tOgO, mode=[1])):
            if tOcO[0, m, 0][0] < seqlen:
                cute.copy(tiled_copy, tOgO[None, m, None], tOrO[None, m, None])
                cute.copy(tiled_copy, tOgdO[None, m, None], tOrdO[None, m, None])

        prod = cute.make_fragment_like(tOrO, Float32)
        prod.store(tOrO.load().to(Float32) * tOrdO.load().to(Float32))
        gdPsum = cute.local_tile(mdPsum[batch, head, None], (self.tile_m,), (m_block,))
        for m in cutlass.range_constexpr(cute.size(prod, mode=[1])):
            dot = prod[None, m, None].load().reduce(cute.ReductionOp.ADD, Float32(0.0), 0)
            dot = cute.arch.warp_reduction(dot, operator.add, threads_in_group=self.threads_per_row)
            row = tOcO[0, m, 0][0]
            if tidx % self.threads_per_row == 0 and row < seqlen:
                gdPsum[row - m_block * self.tile_m] = dot

        row = m_block * self.tile_m + tidx
        if tidx < self.tile_m and row < seqlen:
            lse = mLSE[batch, head, row]
            mLSElog2[batch, head, row] = Float32(0.0) if lse == -Float32.inf else lse * LOG2_E
