"""The sm90 forward's mainloop: the producer warp's loads of a tile's Q, K and V, and a consumer warpgroup's steps
over the key blocks, which take them in the same order: S = Q K^T, the online softmax, O += P V."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional

import cutlass
import cutlass.cute as cute
import cutlass.pipeline as pipeline
from cutlass import Float32, Int32
from cutlass.cute.nvgpu import warpgroup

from cuteattn import softmax
from cuteattn.fragments import as_a_operand, convert, rowcol
from cuteattn.masking import Window, mask_tile
from cuteattn.mods import tile as mod_tile
from cuteattn.sm90 import tma
from cuteattn.sm90.fwd_config import ROWS_PER_WARPGROUP, SCHEDULER_BARRIER, THREADS_PER_WARPGROUP
from cuteattn.sm90.mma import gemm
from cuteattn.tile_scheduler import TileFeed


@dataclass(frozen=True)
class Gemms:
    """A consumer's GEMMs, S = Q K^T and O += P V, over their shared-memory operands: Q's fragment (or its K
    blocks one by one), K's and V's with their stage mode last, and the pipelines that fill those stages."""

    mma_qk: cute.TiledMma
    mma_pv: cute.TiledMma
    q: object
    k: cute.Tensor
    v: cute.Tensor
    pipeline_k: pipeline.PipelineAsync
    pipeline_v: pipeline.PipelineAsync

    def scores(self, acc_s, k_state):
        gemm(self.mma_qk, acc_s, self.q, self.k[None, None, None, k_state.index], True)

    def accumulate(self, rows, v_state):
        gemm(self.mma_pv, rows.acc_o, as_a_operand(rows.p), self.v[None, None, None, v_state.index], False)


@dataclass(frozen=True)
class Rows:
    """A consumer's registers for its 64 rows: S's and O's accumulators, P in the input dtype, each score's
    (row, column) in the tile, and the online softmax's running max and sum and O's pending rescale."""

    acc_s: cute.Tensor
    acc_o: cute.Tensor
    p: cute.Tensor
    coords: cute.Tensor
    row_max: cute.Tensor
    row_sum: cute.Tensor
    rescale: cute.Tensor

    @property
    def s(self) -> cute.Tensor:
        return rowcol(self.acc_s)

    @property
    def o(self) -> cute.Tensor:
        return rowcol(self.acc_o)


@dataclass(frozen=True)
class TileRows:
    """What a consumer's rows of one tile visit: their head and first row, the key blocks (n_block_max - 1 down,
    or a mask_mod's list), the window, the mods' arguments, and the softmax's scales."""

    head: Int32
    row0: Int32
    n_block_max: Int32
    blocks: Optional[cute.Tensor]
    window: Window
    mods: mod_tile.ModArgs
    scale_log2: Float32
    tanh_scale: Float32


class FwdMainloop:
    """Mixed into `fwd_kernel.FlashFwdSm90`; reads its fields."""

    @cute.jit
    def produce(self, tma_q, mQ, tma_k, mK, tma_v, mV, sQ, sK, sV, pipeline_q, pipeline_k, pipeline_v, feed, work):
        cfg = self.config
        q_state = pipeline.make_pipeline_state(pipeline.PipelineUserType.Producer, 1)
        k_state = pipeline.make_pipeline_state(pipeline.PipelineUserType.Producer, cfg.num_stages)
        v_state = pipeline.make_pipeline_state(pipeline.PipelineUserType.Producer, cfg.num_stages)
        feed_state = TileFeed.state(pipeline.PipelineUserType.Producer)
        tile = cute.arch.block_idx()[0]
        feed.post(feed_state.clone(), tile)
        feed_state.advance()
        while tile < feed.count:
            m_block, head, batch, n_block_max, n_blocks, blocks, *_ = work(tile)
            kv_head = head // self.qhead_per_kvhead
            tQsQ, tQgQ = tma.partition(tma_q, sQ, cute.local_tile(mQ[None, None, head, batch],
                                                              (ROWS_PER_WARPGROUP, self.head_dim), (None, 0)))
            tKsK, tKgK = tma.partition(tma_k, sK, cute.local_tile(mK[None, None, kv_head, batch],
                                                              (cfg.tile_n, self.head_dim), (None, 0)))
            tVsV, tVgV = tma.partition(tma_v, sV, cute.local_tile(mV[None, None, kv_head, batch],
                                                              (self.head_dim_v, cfg.tile_n), (0, None)))
            # K of the first block before Q: its stage frees while the consumers still store the last tile's O
            # over Q. (States advance outside the branches, which the DSL does not carry them out of.)
            if n_blocks > 0:
                n_block_first, _ = self.block_at(blocks, 0, n_block_max)
                tma.load(tma_k, pipeline_k, k_state.clone(), tKgK[None, n_block_first], tKsK)
            pipeline_q.producer_acquire(q_state)
            for wg in cutlass.range_constexpr(cfg.num_consumers):
                cute.copy(tma_q, tQgQ[None, m_block * cfg.num_consumers + wg], tQsQ[None, wg],
                          tma_bar_ptr=pipeline_q.producer_get_barrier(q_state))
            q_state.advance()
            if n_blocks > 0:
                self.load_kv(tma_k, tKgK, tKsK, tma_v, tVgV, tVsV, pipeline_k, pipeline_v, k_state.clone(),
                             v_state.clone(), n_block_max, n_blocks, blocks)
            k_state.advance(n_blocks)
            v_state.advance(n_blocks)
            tile = feed.after(tile)
            feed.post(feed_state.clone(), tile)
            feed_state.advance()

    @cute.jit
    def load_kv(self, tma_k, tKgK, tKsK, tma_v, tVgV, tVsV, pipeline_k, pipeline_v, k_state, v_state, n_block_max,
                n_blocks, blocks):
        """A tile's K and V after its first K, in the order the consumers take them: K of block i + 1 before V
        of block i."""
        k_state.advance()
        for i in cutlass.range(1, n_blocks, unroll=1):
            n_block_next, _ = self.block_at(blocks, i, n_block_max)
            tma.load(tma_k, pipeline_k, k_state, tKgK[None, n_block_next], tKsK)
            k_state.advance()
            n_block_prev, _ = self.block_at(blocks, i - 1, n_block_max)
            tma.load(tma_v, pipeline_v, v_state, tVgV[None, n_block_prev], tVsV)
            v_state.advance()
        n_block_last, _ = self.block_at(blocks, n_blocks - 1, n_block_max)
        tma.load(tma_v, pipeline_v, v_state, tVgV[None, n_block_last], tVsV)

    @cute.jit
    def block_at(self, blocks, i, n_block_max):
        """The i-th key block to visit and whether a mask_mod must mask it (its block list's cut; False without a
        list). Its window edges and the seqlen_k tail are masked on the list's partial blocks, which come first."""
        if cutlass.const_expr(blocks is None):
            return n_block_max - 1 - i, False
        return blocks[i] >> 2, (blocks[i] & 2) != 0

    @cute.jit
    def wait_turn(self, wg):
        """Ping-pong: wait until the previous consumer (round robin) has issued its GEMMs."""
        if cutlass.const_expr(self.config.pingpong and self.config.num_consumers > 1):
            cute.arch.barrier(barrier_id=SCHEDULER_BARRIER + wg, number_of_threads=2 * THREADS_PER_WARPGROUP)

    @cute.jit
    def pass_turn(self, wg):
        if cutlass.const_expr(self.config.pingpong and self.config.num_consumers > 1):
            cute.arch.barrier_arrive(barrier_id=SCHEDULER_BARRIER + (wg + 1) % self.config.num_consumers,
                                     number_of_threads=2 * THREADS_PER_WARPGROUP)

    def score_mod_prologue(self, rows, tile, block):
        """The score-independent part of the score_mod for a block, or None: issued before the wait for the
        block's scores, so its table loads overlap the GEMM."""
        if self.score_mod is None:
            return None
        score_tensors, _ = tile.mods.split(self.score_mod)
        place = tile.mods.place(tile.head, tile.row0, block[0] * self.config.tile_n)
        return mod_tile.score_mod_prologue(self.score_mod, score_tensors, rows.s, rows.coords, place)

    @cute.jit
    def softmax_block(self, rows, tile, block, prologue, masked: cutlass.Constexpr = True):
        """Softcap, score_mod, mask the score tile where it needs it (the seqlen_k tail, across a window edge;
        the blocks the mask_mod cuts; not at all unless `masked`), softmax."""
        s, coords, row0, window, mods = rows.s, rows.coords, tile.row0, tile.window, tile.mods
        if cutlass.const_expr(self.has_softcap):
            softmax.softcap(s, tile.tanh_scale)
        n_block, cut = block
        col0 = n_block * self.config.tile_n
        place = mods.place(tile.head, row0, col0)
        score_tensors, mask_tensors = mods.split(self.score_mod)
        if cutlass.const_expr(self.score_mod is not None):
            mod_tile.apply_score_mod(self.score_mod, score_tensors, s, coords, place, mods.score_scale, prologue)
        if cutlass.const_expr(masked):
            if window.needs_mask(row0, row0 + ROWS_PER_WARPGROUP - 1, col0, self.config.tile_n):
                mask_tile(s, coords, row0, col0, window, self.config.tile_n)
        if cutlass.const_expr(self.mask_mod is not None and masked):
            if cut:  # blocks of the block sparsity that the mask_mod does not cut need no mask_mod
                mod_tile.apply_mask_mod(self.mask_mod, mask_tensors, s, coords, place)
        softmax.step(s, rows.row_max, rows.row_sum, tile.scale_log2, rows.rescale, self.config.rescale_threshold)

    @cute.jit
    def mainloop_step(self, gemms, rows, tile, wg, k_state, v_state, i, masked: cutlass.Constexpr):
        """Block i >= 1: within the warpgroup, its softmax runs while the tensor cores do O += P V of block
        i - 1 (blocks go from the last one down); `masked`: the block may need a mask. The caller advances the
        pipeline states."""
        block = self.block_at(tile.blocks, i, tile.n_block_max)
        prologue = self.score_mod_prologue(rows, tile, block)
        gemms.pipeline_k.consumer_wait(k_state)
        self.wait_turn(wg)
        gemms.scores(rows.acc_s, k_state)
        softmax.rescale_rows(rows.o, rows.rescale)  # to block i - 1's max, while the S GEMM runs
        gemms.pipeline_v.consumer_wait(v_state)
        gemms.accumulate(rows, v_state)
        self.pass_turn(wg)
        warpgroup.wait_group(1)
        gemms.pipeline_k.consumer_release(k_state)
        self.softmax_block(rows, tile, block, prologue, masked)
        warpgroup.wait_group(0)
        gemms.pipeline_v.consumer_release(v_state)
        convert(rows.acc_s, rows.p)

    @cute.jit
    def mainloop(self, gemms, rows, tile, k_state, v_state, n_blocks, n_partial, skip, wg, free_q=None):
        """O and the softmax state of one tile's rows over its n_blocks key blocks, the first `skip` of them
        above these rows (passed), at least one not; `free_q` (or None) is called once the last S GEMM is done."""
        cfg = self.config
        last_wg = cfg.num_consumers - 1
        if wg == last_wg:  # consumer 0 issues first
            self.pass_turn(wg)
        self.pass_turns(gemms, k_state.clone(), v_state.clone(), skip, wg)
        k_state.advance(skip)
        v_state.advance(skip)
        n_blocks = n_blocks - skip
        block = self.block_at(tile.blocks, 0, tile.n_block_max)
        prologue = self.score_mod_prologue(rows, tile, block)
        gemms.pipeline_k.consumer_wait(k_state)
        self.wait_turn(wg)
        gemms.scores(rows.acc_s, k_state)
        self.pass_turn(wg)
        warpgroup.wait_group(0)
        gemms.pipeline_k.consumer_release(k_state)
        k_state.advance()
        self.softmax_block(rows, tile, block, prologue)
        convert(rows.acc_s, rows.p)
        # Only the first blocks can need a mask: the highest (the seqlen_k tail, the causal diagonal) and, under a
        # left window edge, the lowest; or a block list's partial ones. The others skip the mask's branch. ptxas
        # schedules a step without a branch inside as one block (across one, it hoists the wait for O += P V
        # above the exps placed to overlap it).
        step = functools.partial(self.mainloop_step, gemms, rows, tile, wg)
        left_cut = tile.blocks is None and self.has_window_left
        n_masked, unmasked_end = cutlass.max(n_partial, 1), n_blocks
        if cutlass.const_expr(tile.blocks is None):
            n_masked, unmasked_end = tile.window.masked_steps(tile.row0, ROWS_PER_WARPGROUP, tile.n_block_max,
                                                              n_blocks, cfg.tile_n)
        if cutlass.const_expr(cfg.masked_loop):
            for i in cutlass.range(1, n_masked, unroll=1):
                step(k_state, v_state, i, True)
                k_state.advance()
                v_state.advance()
            for i in cutlass.range(n_masked, unmasked_end, unroll=1):
                step(k_state, v_state, i, False)
                k_state.advance()
                v_state.advance()
            if cutlass.const_expr(left_cut):
                for i in cutlass.range(unmasked_end, n_blocks, unroll=1):
                    step(k_state, v_state, i, True)
                    k_state.advance()
                    v_state.advance()
        else:
            for i in cutlass.range(1, n_blocks, unroll=1):
                if i < n_masked or i >= unmasked_end:
                    step(k_state, v_state, i, True)
                else:
                    step(k_state, v_state, i, False)
                k_state.advance()
                v_state.advance()
        if cutlass.const_expr(free_q is not None):
            free_q()
        softmax.rescale_rows(rows.o, rows.rescale)
        gemms.pipeline_v.consumer_wait(v_state)
        self.wait_turn(wg)
        gemms.accumulate(rows, v_state)
        if wg != last_wg:  # the turns balance: the last consumer passed the first turn, not this one
            self.pass_turn(wg)
        warpgroup.wait_group(0)
        gemms.pipeline_v.consumer_release(v_state)

    @cute.jit
    def pass_turns(self, gemms, k_state, v_state, count, wg):
        """`count` key blocks that this consumer's rows do not see: each one's turn taken and passed at once, its
        K and V stages freed, no GEMM. The caller advances its pipeline states: a state advanced in a callee's
        dynamic loop comes back to the caller unchanged (the DSL carries loop values by rebinding names)."""
        for i in cutlass.range(count, unroll=1):
            gemms.pipeline_k.consumer_wait(k_state)
            self.wait_turn(wg)
            self.pass_turn(wg)
            gemms.pipeline_k.consumer_release(k_state)
            k_state.advance()
            gemms.pipeline_v.consumer_wait(v_state)
            gemms.pipeline_v.consumer_release(v_state)
            v_state.advance()

    @cute.jit
    def pass_blocks(self, gemms, k_state, v_state, n_blocks, wg):
        """The mainloop of a consumer whose rows see none of the tile's blocks: every turn `mainloop` takes,
        taken and passed at once, and every K and V stage freed, with no GEMM."""
        last_wg = self.config.num_consumers - 1
        if wg == last_wg:
            self.pass_turn(wg)
        self.pass_turns(gemms, k_state, v_state, n_blocks, wg)
        self.wait_turn(wg)  # the last P V's turn
        if wg != last_wg:
            self.pass_turn(wg)
