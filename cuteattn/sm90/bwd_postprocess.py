"""Attention backward postprocess for sm_90a: the fp32 dQ workspace -> dQ * softmax_scale in the input dtype.

One CTA per (m_block, head, batch); each thread reads back the registers its twin in the backward added
(see `dq_accum`), so the workspace's fragment order never needs decoding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Type

import cuda.bindings.driver as cuda

import cutlass
import cutlass.cute as cute
from cutlass import Float32

from cuteattn.kernel_args import launch
from cuteattn.sm90 import dq_accum
from cuteattn.sm90.smem import transposed


@dataclass(frozen=True)
class DqPostprocess:
    dtype: Type[cutlass.Numeric]
    head_dim: int
    tile_m: int

    @cute.jit
    def __call__(
        self,
        mdQaccum: cute.Tensor,  # (batch, heads, m_blocks, tile_m * head_dim) fp32
        mdQ: cute.Tensor,  # (batch, seqlen_q, heads, head_dim)
        scale: Float32,
        stream: cuda.CUstream,
    ):
        batch, heads, m_blocks, _ = mdQaccum.shape
        tiled_mma = dq_accum.tiled_mma(self.dtype, self.tile_m, self.head_dim)
        launch(self.cta_body(mdQaccum, mdQ, scale, tiled_mma), (m_blocks, heads, batch),
               dq_accum.WARPGROUPS * dq_accum.THREADS_PER_WARPGROUP, stream)

    @cute.kernel
    def cta_body(self, mdQaccum: cute.Tensor, mdQ: cute.Tensor, scale: Float32, tiled_mma: cute.TiledMma):
        tidx, _, _ = cute.arch.thread_idx()
        m_block, head, batch = cute.arch.block_idx()
        wg = tidx // dq_accum.THREADS_PER_WARPGROUP
        wg_tidx = tidx % dq_accum.THREADS_PER_WARPGROUP
        seqlen = mdQ.shape[1]
        tile = dq_accum.tile(self.tile_m, self.head_dim)

        thr = tiled_mma.get_slice(wg_tidx)
        acc = cute.make_rmem_tensor(thr.partition_shape_C(tile), Float32)
        cute.autovec_copy(dq_accum.chunk(mdQaccum[batch, head, m_block, None], acc, wg, wg_tidx),
                          dq_accum.vectors(acc))
        out = cute.make_rmem_tensor_like(acc, self.dtype)
        out.store((acc.load() * scale).to(self.dtype))
        dq, rows = mdQ[batch, None, head, None], cute.make_identity_tensor((seqlen, self.head_dim))
        where = (m_block, wg)
        if cutlass.const_expr(dq_accum.swapped(self.tile_m)):
            dq, rows, where = transposed(dq), transposed(rows), (wg, m_block)
        dst = thr.partition_C(cute.local_tile(dq, tile, where))
        coords = thr.partition_C(cute.local_tile(rows, tile, where))  # (row, col) of dQ either way
        for i in cutlass.range_constexpr(cute.size(out)):
            if coords[i][0] < seqlen:
                dst[i] = out[i]
