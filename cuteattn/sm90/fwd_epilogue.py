"""The sm90 forward's epilogue: a consumer's O normalized and stored, and its rows' log-sum-exp."""

from __future__ import annotations

import cutlass
import cutlass.cute as cute

from cuteattn import softmax
from cuteattn.fragments import convert, rowcol
from cuteattn.sm90 import tma
from cuteattn.sm90.fwd_config import EPILOGUE_BARRIER, ROWS_PER_WARPGROUP, THREADS_PER_WARPGROUP
from cuteattn.sm90.smem import accumulator_store


class FwdEpilogue:
    """Mixed into `fwd_kernel.FlashFwdSm90`; reads its dtype, config, head_dim_v and has_sink."""

    @cute.jit
    def epilogue(self, tma_o, mO, mLSE, mSink, tiled_mma_pv, rows, tile, sO, m_block, batch, seqlen_q, wg,
                 wg_tidx):
        """Normalize O and write it (through shared memory: over this consumer's Q tile, or, persistent, O's own
        buffer) and the rows' lse."""
        acc_o, o, coords, row_max, head, row0 = rows.acc_o, rows.o, rows.coords, rows.row_max, tile.head, tile.row0
        lse = cute.make_rmem_tensor_like(row_max)
        sink_log2 = None
        if cutlass.const_expr(self.has_sink):
            sink_log2 = mSink[head] * softmax.LOG2_E
        softmax.finish(o, row_max, rows.row_sum, tile.scale_log2, lse, sink_log2)
        if wg_tidx % 4 == 0:  # the first of the four lanes that share a row
            for r in cutlass.range_constexpr(cute.size(lse)):
                row = row0 + coords[r, 0][0]
                if row < seqlen_q:
                    mLSE[row, head, batch] = lse[r]

        o_out = cute.make_rmem_tensor_like(acc_o, self.dtype)
        convert(acc_o, o_out)
        if cutlass.const_expr(self.config.persistent):  # the last tile's O store has been read (by its warp 0)
            cute.arch.barrier(barrier_id=EPILOGUE_BARRIER + wg, number_of_threads=THREADS_PER_WARPGROUP)
        store_o, thr_store = accumulator_store(self.dtype, tiled_mma_pv, wg_tidx)  # hdim 128: 8 stores, not 32
        cute.copy(store_o, thr_store.retile(o_out), thr_store.partition_D(sO[None, None, wg]))
        # The TMA engine reads sO through the async proxy: order the ordinary stores before it.
        cute.arch.fence_proxy("async.shared", space="cta")
        cute.arch.barrier(barrier_id=EPILOGUE_BARRIER + wg, number_of_threads=THREADS_PER_WARPGROUP)
        if wg_tidx < cute.arch.WARP_SIZE:
            gO = cute.local_tile(mO[None, None, head, batch], (ROWS_PER_WARPGROUP, self.head_dim_v), (None, 0))
            tOsO, tOgO = tma.partition(tma_o, sO, gO)
            cute.copy(tma_o, tOsO[None, wg], tOgO[None, m_block * self.config.num_consumers + wg])
            cute.arch.cp_async_bulk_commit_group()
            cute.arch.cp_async_bulk_wait_group(0, read=True)

    @cute.jit
    def store_part(self, gO, gLSE, tiled_mma_pv, rows, tile, seqlen_q, wg_tidx):
        """A split tile's epilogue: O normalized over the part's keys, in fp32 from registers (few rows: the
        launch's last tiles, or all of one with fewer tiles than SMs), into gO (64, head_dim_v), and the rows'
        lse over those keys into gLSE (64,) (-inf, O = 0, where they see none)."""
        o, coords, row0 = rows.o, rows.coords, tile.row0
        lse = cute.make_rmem_tensor_like(rows.row_max)
        softmax.finish(o, rows.row_max, rows.row_sum, tile.scale_log2, lse)
        tOgO = rowcol(tiled_mma_pv.get_slice(wg_tidx).partition_C(gO))  # one base address, constant offsets
        for r in cutlass.range_constexpr(cute.size(lse)):
            row = coords[r, 0][0]
            if row0 + row < seqlen_q:
                if wg_tidx % 4 == 0:  # the first of the four lanes that share a row
                    gLSE[row] = lse[r]
                for c in cutlass.range_constexpr(cute.size(o, mode=[1])):
                    tOgO[r, c] = o[r, c]
