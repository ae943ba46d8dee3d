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
    def write_dq(self, mdQaccum, mdQcount, sdQ, n_block, batch, steps, window, wg):
        """A writer warp: per step, once consumer `wg` has stored its half of dQ in shared memory, store or add it
        into the workspace with one bulk copy (`claim_dq` says which), and free the buffer once the copy engine
        has read it (a second buffer measured no faster). A first store, and with deterministic every write,
        then counts itself in once it has landed."""
        half = dq_accum.half_size(self.config.tile_m, self.head_dim)
        handshake = THREADS_PER_WARPGROUP + cute.arch.WARP_SIZE
        lane = cute.arch.lane_idx()
        # The preprocess (use_pdl) zeroes the counts.
        cute.arch.griddepcontrol_wait()
        first = self.claim_dq(mdQcount, batch, steps, Int32(0), n_block, window, wg, lane)
        for step in cutlass.range(steps.count, unroll=1):
            head, m_block, _ = steps.at(step)
            count = mdQcount[batch, head, m_block, None].iterator + wg
            chunk, mine = mdQaccum[batch, head, m_block, None].iterator + wg * half, sdQ.iterator + wg * half
            cute.arch.barrier(barrier_id=DQ_FULL_BARRIER + wg, number_of_threads=handshake)
            if lane == 0:
                # The claim's acquire was in the generic proxy; the copy engine's writes are in the async one.
                cute.arch.fence_proxy("async.global")
                if first:
                    dq_accum.bulk_store(chunk, mine, half * Float32.width // 8)
                else:
                    dq_accum.bulk_add(chunk, mine, half * Float32.width // 8)
                cute.arch.cp_async_bulk_commit_group()
                cute.arch.cp_async_bulk_wait_group(0, read=True)
            if step + 1 < steps.count:  # the consumer waits for it before its next store
                cute.arch.barrier_arrive(barrier_id=DQ_EMPTY_BARRIER + wg, number_of_threads=handshake)
            lands = first  # counts itself in once landed
            if cutlass.const_expr(self.deterministic):
                lands = cutlass.Boolean(True)
            if lane == 0:
                if lands:
                    cute.arch.cp_async_bulk_wait_group(0)
                    cute.arch.fence_proxy("async.global")
                    cute.arch.fence_acq_rel_gpu()
                    cute.arch.atomic_add(count, Int32(1 if self.deterministic else dq_accum.LANDED), sem="release",
                                         scope="gpu")
            # The next step's claim (and wait) runs while the consumer computes it.
            first = self.claim_dq(mdQcount, batch, steps, step + 1, n_block, window, wg, lane)

    @cute.jit
    def claim_dq(self, mdQcount, batch, steps, step, n_block, window, wg, lane):
        """In lane 0, once step `step`'s half of dQ may be written: whether this key block writes it first, so
        stores it. With deterministic, once the key blocks before it in the window have landed theirs (the
        count is of turns), and the first turn stores. Else the first key block to claim the half (the count
        is of claims) stores it, and a later one waits for that store to land: it never waits for a CTA that
        has not started, nor while it holds a claim of its own that has not landed."""
        first = cutlass.Boolean(False)
        if (lane == 0) & (step < steps.count):
            head, m_block, _ = steps.at(step)
            count = mdQcount[batch, head, m_block, None].iterator + wg
            if cutlass.const_expr(self.deterministic):
                my_turn = self.dq_turn(steps, step, m_block, n_block, window)
                while cute.arch.atomic_add(count, Int32(0), sem="acquire", scope="gpu") != my_turn:
                    pass
                first = my_turn == 0
            else:
                claimed = cute.arch.atomic_add(count, Int32(1), sem="acquire", scope="gpu")
                first = claimed == 0
                while (claimed > 0) & (claimed < dq_accum.LANDED):
                    claimed = cute.arch.atomic_add(count, Int32(0), sem="acquire", scope="gpu")
        return first

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
