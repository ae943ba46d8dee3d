"""dQ's way out of the sm90 backward: a consumer hands its part of dQ over through shared memory, and a writer warp
of the producer warpgroup adds it into the fp32 workspace of `dq_accum`."""

from __future__ import annotations

import cutlass
import cutlass.cute as cute
from cutlass import Float32, Int32

from cuteattn.sm90 import dq_accum
from cuteattn.sm90.bwd_config import DQ_EMPTY_BARRIER, DQ_FULL_BARRIER, THREADS_PER_WARPGROUP


class DqWriter:
    """Mixed into the backward kernels; reads their config, head_dim, tile_n and deterministic."""

    @cute.jit
    def write_dq(self, mdQaccum, mdQturn, sdQ, n_block, batch, steps, window, wg):
        """A writer warp: per step, once consumer `wg` has stored its half of dQ in shared memory, add it into
        the workspace with one bulk reduction, and free the buffer once the copy engine has read it (a second
        buffer measured no faster). With
        deterministic, wait for this key block's turn first (a counter per query block and consumer), and
        count the turn on only when the adds have landed, so every dQ element sums its terms in one order."""
        cfg = self.config
        half = dq_accum.half_size(cfg.tile_m, self.head_dim)
        handshake = THREADS_PER_WARPGROUP + cute.arch.WARP_SIZE
        lane = cute.arch.lane_idx()
        for step in cutlass.range(steps.count, unroll=1):
            head, m_block, _ = steps.at(step)
            cute.arch.barrier(barrier_id=DQ_FULL_BARRIER + wg, number_of_threads=handshake)
            if lane == 0:
                turn = mdQturn[batch, head, m_block, None].iterator + wg if cutlass.const_expr(
                    self.deterministic) else None
                if cutlass.const_expr(self.deterministic):
                    my_turn = self.dq_turn(steps, step, m_block, n_block, window)
                    while cute.arch.atomic_add(turn, Int32(0), sem="acquire", scope="gpu") != my_turn:
                        pass
                dq_accum.bulk_add(mdQaccum[batch, head, m_block, None].iterator + wg * half, sdQ.iterator + wg * half,
                                  half * Float32.width // 8)
                cute.arch.cp_async_bulk_commit_group()
                if cutlass.const_expr(self.deterministic):
                    cute.arch.cp_async_bulk_wait_group(0)
                    cute.arch.fence_acq_rel_gpu()
                    cute.arch.atomic_add(turn, Int32(1), sem="release", scope="gpu")
                else:
                    cute.arch.cp_async_bulk_wait_group(0, read=True)
            if step + 1 < steps.count:  # the consumer waits for it before its next store
                cute.arch.barrier_arrive(barrier_id=DQ_EMPTY_BARRIER + wg, number_of_threads=handshake)

    @cute.jit
    def dq_turn(self, steps, step, m_block, n_block, window):
        """How many key blocks add into this step's dQ before this one: from the block list, or every block
        of the window before it."""
        if cutlass.const_expr(steps.turns is not None):
            return steps.turns[step]
        tile_m = self.config.tile_m
        first_row = m_block * tile_m
        first_n_block, _ = window.block_range(first_row, cutlass.min(first_row + tile_m, window.seqlen_q) - 1,
                                              self.tile_n)
        return n_block - first_n_block

    @cute.jit
    def hand_over_dq(self, acc_dq, sdQ, wg, wg_tidx, step):
        """This consumer's dQ into its half of the shared-memory chunk, once its writer warp has read the last
        one, then signal the writer."""
        handshake = THREADS_PER_WARPGROUP + cute.arch.WARP_SIZE
        if step > 0:
            cute.arch.barrier(barrier_id=DQ_EMPTY_BARRIER + wg, number_of_threads=handshake)
        dq_accum.store(acc_dq, sdQ, wg, wg_tidx)
        # The copy engine reads dQ through the async proxy.
        cute.arch.fence_proxy("async.shared", space="cta")
        cute.arch.barrier_arrive(barrier_id=DQ_FULL_BARRIER + wg, number_of_threads=handshake)
