"""Attention backward postprocess for sm_90a: the fp32 dQ workspace -> dQ * softmax_scale in the input dtype;
and a split tail's dK and dV parts added up (`TailSum`).

One CTA per (m_block, head, batch); each thread reads back the registers its twin in the backward added
(see `dq_accum`), so the workspace's fragment order never needs decoding. dQ goes out through shared memory,
in 16-byte pieces of whole rows: from the registers, a store instruction of a warp would cover 8 rows by 16
bytes, half of each 32-byte sector it touches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Type

import cuda.bindings.driver as cuda

import cutlass
import cutlass.cute as cute
from cutlass import Float32

from cuteattn.kernel_args import ALIGN_BYTES, launch
from cuteattn.sm90 import dq_accum
from cuteattn.sm90.smem import transposed
from cuteattn.tile_scheduler import tail_row


ROW_PAD = 8  # elements after each row of the staged tile: 16 bytes, so the 8 rows a warp stores hit distinct banks


@dataclass(frozen=True)
class DqPostprocess:
    dtype: Type[cutlass.Numeric]
    head_dim: int
    tile_m: int
    by_rows: bool = False  # the backward's consumers split dQ's rows, not its columns (`dq_accum`)

    @cute.jit
    def __call__(
        self,
        mdQaccum: cute.Tensor,  # (batch, heads, m_blocks, tile_m * head_dim) fp32
        mdQ: cute.Tensor,  # (batch, seqlen_q, heads, head_dim)
        scale: Float32,
        stream: cuda.CUstream,
    ):
        batch, heads, m_blocks, _ = mdQaccum.shape
        tiled_mma = dq_accum.tiled_mma(self.dtype, self.tile_m, self.head_dim, self.by_rows)
        launch(self.cta_body(mdQaccum, mdQ, scale, tiled_mma), (m_blocks, heads, batch), self.num_threads, stream,
               smem=cute.cosize(self.staged_layout) * self.dtype.width // 8 + ALIGN_BYTES)

    @property
    def num_threads(self) -> int:
        return dq_accum.WARPGROUPS * dq_accum.THREADS_PER_WARPGROUP

    @property
    def staged_layout(self):
        """The tile of dQ in shared memory: (tile_m, head_dim), rows padded."""
        return cute.make_layout((self.tile_m, self.head_dim), stride=(self.head_dim + ROW_PAD, 1))

    @cute.kernel
    def cta_body(self, mdQaccum: cute.Tensor, mdQ: cute.Tensor, scale: Float32, tiled_mma: cute.TiledMma):
        tidx, _, _ = cute.arch.thread_idx()
        m_block, head, batch = cute.arch.block_idx()
        wg = tidx // dq_accum.THREADS_PER_WARPGROUP
        wg_tidx = tidx % dq_accum.THREADS_PER_WARPGROUP
        seqlen = mdQ.shape[1]
        tile = dq_accum.tile(self.tile_m, self.head_dim, self.by_rows)

        thr = tiled_mma.get_slice(wg_tidx)
        acc = cute.make_rmem_tensor(thr.partition_shape_C(tile), Float32)
        cute.autovec_copy(dq_accum.chunk(mdQaccum[batch, head, m_block, None], acc, wg, wg_tidx),
                          dq_accum.vectors(acc))
        out = cute.make_rmem_tensor_like(acc, self.dtype)
        out.store((acc.load() * scale).to(self.dtype))
        staged = cutlass.memory.SmemAllocator().allocate_tensor(self.dtype, self.staged_layout, ALIGN_BYTES)
        view, where = staged, (wg, 0) if self.by_rows else (0, wg)
        if cutlass.const_expr(dq_accum.swapped(self.tile_m)):
            view, where = transposed(staged), (wg, 0)
        cute.autovec_copy(out, thr.partition_C(cute.local_tile(view, tile, where)))
        cute.arch.barrier()

        vector = ALIGN_BYTES * 8 // self.dtype.width
        pieces = cute.zipped_divide(staged, (1, vector))  # ((1, vector), (tile_m, head_dim / vector))
        gdq = cute.local_tile(mdQ[batch, None, head, None], (self.tile_m, self.head_dim), (m_block, 0))
        out_pieces = cute.zipped_divide(gdq, (1, vector))
        per_row = self.head_dim // vector
        count = self.tile_m * per_row
        for k in cutlass.range_constexpr(-(-count // self.num_threads)):
            piece = tidx + k * self.num_threads
            row, col = piece // per_row, piece % per_row
            if (row < self.tile_m) & (m_block * self.tile_m + row < seqlen):
                out_pieces[None, (row, col)].store(pieces[None, (row, col)].load())


VECTOR = 4  # fp32 elements a thread adds of a row
THREADS = 128


@dataclass(frozen=True)
class TailSum:
    """dK and dV of a split tail's key blocks (`bwd_kernel.FlashBwdSm90.tail_splits`): each row the sum of its
    parts, in the input dtype. The parts' rows are those of the launch's last key blocks in order (n_block
    fastest, then KV head, then batch), tile_n rows each, the last block's past seqlen_k not stored."""

    dtype: Type[cutlass.Numeric]
    head_dim: int
    head_dim_v: int
    tile_n: int

    @property
    def vectors(self) -> int:
        """Threads a row: each adds VECTOR columns of dK, of dV, or of both."""
        return max(self.head_dim, self.head_dim_v) // VECTOR

    @cute.jit
    def __call__(
        self,
        mdKpart: cute.Tensor,  # (parts, rows, head_dim) fp32, dK already scaled
        mdVpart: cute.Tensor,  # (parts, rows, head_dim_v) fp32
        mdK: cute.Tensor,  # (batch, seqlen_k, heads_kv, head_dim)
        mdV: cute.Tensor,  # (batch, seqlen_k, heads_kv, head_dim_v)
        stream: cuda.CUstream,
    ):
        threads = mdKpart.shape[1] * self.vectors
        launch(self.cta_body(mdKpart, mdVpart, mdK, mdV), (cute.ceil_div(threads, THREADS), 1, 1), THREADS, stream)

    @cute.kernel
    def cta_body(self, mdKpart: cute.Tensor, mdVpart: cute.Tensor, mdK: cute.Tensor, mdV: cute.Tensor):
        tidx, _, _ = cute.arch.thread_idx()
        parts, rows, _ = mdKpart.shape
        batch, seqlen_k, heads, _ = mdK.shape
        vectors = self.vectors
        t = cute.arch.block_idx()[0] * THREADS + tidx
        b, head, key = tail_row(t // vectors, rows, self.tile_n, seqlen_k, heads, batch)
        if t < rows * vectors:
            if key < seqlen_k:
                col = t % vectors * VECTOR
                for part, out, cols in ((mdKpart, mdK, self.head_dim), (mdVpart, mdV, self.head_dim_v)):
                    if col < cols:
                        acc = cute.make_rmem_tensor((VECTOR,), Float32)
                        acc.fill(0.0)
                        for s in cutlass.range(parts, unroll=1):
                            for i in cutlass.range_constexpr(VECTOR):
                                acc[i] += part[s, t // vectors, col + i]
                        for i in cutlass.range_constexpr(VECTOR):
                            out[b, key, head, col + i] = acc[i].to(self.dtype)
