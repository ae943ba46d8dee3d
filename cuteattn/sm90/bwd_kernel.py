"""Hopper (sm90) attention backward: one CTA per block of keys, over the query blocks that see it.

Warpgroup 0 produces: one warp loads the CTA's K and V once, then Q with its rows' lse and dO with its
rows' dpsum, block by block, into two mbarrier pipelines. Each of the two consumer warpgroups owns 64 keys
and, per block of tile_m queries:

    S^T  = K Q^T,  dP^T = V dO^T                     wgmma, both operands in shared memory
    P^T  = exp2(S^T * scale_log2 - lse_log2)         lse of each query column
    dV  += P^T dO                                    P^T from registers
    dS^T = P^T * (dP^T - dpsum)
    dK  += dS^T Q                                    dS^T from registers
    dQ[:, half] = dS K[:, half]                      dS through shared memory, all 128 keys

then stores its half of dQ in shared memory, where a writer warp of the producer warpgroup adds it into
the fp32 workspace of `dq_accum` with one bulk reduction (atomics from the consumers' own threads stalled
them: the loads of the next step queued behind the adds). Computing the scores transposed puts each key
on a row, so P^T and dS^T come out of the accumulators already as the A operands of dV and dK. dK and dV
stay in registers over every query block, and under GQA over every query head that shares the KV head,
and are written once at the end.

A split tail (`tail_splits`): the launch's last key blocks, which would leave most SMs idle in the last wave,
are each shared by several CTAs, each taking a run of the steps and writing its dK and dV in fp32, which
`bwd_postprocess.TailSum` adds up.

Query rows past seqlen_q are zeros (TMA fills them) with lse_log2 = dpsum = 0, so they add nothing (under a
score_mod, which may give them any score, they are masked too); keys past seqlen_k and outside the window are
masked on the blocks that cross them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Type

import cuda.bindings.driver as cuda

import cutlass
import cutlass.cute as cute
import cutlass.pipeline as pipeline
import cutlass.utils.hopper_helpers as sm90_utils
from cutlass import Float32, Int32
from cutlass.cute.nvgpu import OperandMajorMode, cpasync
from cutlass.cute.nvgpu.warpgroup import OperandSource

from cuteattn.kernel_args import BlockLists, ScoreArgs, launch
from cuteattn.masking import Window
from cuteattn.mods import tile as mod_tile
from cuteattn.mods.trace import TracedMod
from cuteattn.sm90 import dq_accum, tma
from cuteattn.sm90.bwd_config import (CONSUMER_REGISTERS, CONSUMERS, DQ_WRITER_WARP, DS_BUFFERS, KEYS_PER_WARPGROUP,
                                      L2_SHARE_MB, PRODUCER_REGISTERS, TABLE_BARRIER, THREADS_PER_WARPGROUP, TILE_N,
                                      BwdConfig)
from cuteattn.sm90.bwd_dq_writer import DqWriter
from cuteattn.sm90.bwd_epilogue import DkvEpilogue
from cuteattn.sm90.bwd_mainloop import BwdMainloop
from cuteattn.sm90.bwd_scores import BwdScores
from cuteattn.sm90.bwd_steps import Steps, TailPart
from cuteattn.sm90.smem import one_stage, operand_layout
from cuteattn.tile_scheduler import TileOrder, cta_tile, l2_group


@dataclass(frozen=True)
class FlashBwdSm90(BwdMainloop, BwdScores, DqWriter, DkvEpilogue):
    dtype: Type[cutlass.Numeric]
    head_dim: int
    head_dim_v: int
    qhead_per_kvhead: int
    has_window_left: bool = False  # the sliding window's bounded sides; causal is window_right = 0
    has_window_right: bool = False
    has_softcap: bool = False
    deterministic: bool = False  # key blocks add into dQ one after another, in order
    score_mod: Optional[TracedMod] = None
    mask_mod: Optional[TracedMod] = None
    config: BwdConfig = BwdConfig()
    # The launch's last key blocks (as many as mdKtail's rows take) split into this many runs of steps each, a
    # compile-time count, which keeps the stages in uniform registers (`fwd_kernel.FlashFwdSm90.tail_splits`).
    tail_splits: int = 1

    @staticmethod
    def covers(head_dim: int, head_dim_v: int) -> bool:
        """Each consumer holds dK and dV of all columns for its keys: equal head dims up to 128."""
        return head_dim == head_dim_v and head_dim <= 128

    def __post_init__(self):
        assert self.covers(self.head_dim, self.head_dim_v), f"head dims {self.head_dim}, {self.head_dim_v}"
        # S^T, dP^T, dK and dV of 128 query rows fit the registers only at head_dim 64: past it ptxas serializes
        # every wgmma.
        assert self.config.tile_m == 64 or (self.config.tile_m == 128 and self.head_dim <= 64) or \
            (self.config.tile_m == 80 and self.head_dim == 128), \
            f"the key split takes tile_m 64, 128 at head_dim 64 or 80 at 128 (given {self.config.tile_m} at " \
            f"{self.head_dim})"
        self.check_split_tail()
        assert not self.config.dq_by_rows or dq_accum.rows_split(self.config.tile_m), \
            f"dq_by_rows splits 128 query rows in two (given tile_m {self.config.tile_m})"

    def check_split_tail(self):
        assert not self.split_tail or not (self.deterministic or self.mask_mod is not None or self.has_window_left
                                           or self.has_window_right), \
            "a split tail takes the plain order's last key blocks, of equal work, each part adding into dQ at once"

    @property
    def split_tail(self) -> bool:
        """mdKtail, mdVtail: the parts of the launch's last key blocks."""
        return self.tail_splits > 1

    @property
    def do_stages(self) -> int:
        return self.config.do_stages or self.config.num_stages

    @property
    def transposed_scores(self) -> bool:
        """Whether a consumer's score tile holds keys on its rows (S^T), not queries."""
        return True

    @property
    def row_stage(self) -> int:
        """Floats between the stages of lse (and dpsum) in shared memory: a TMA writes to 128-byte aligned
        addresses, which 80 rows are not."""
        return -(-self.config.tile_m // 32) * 32

    @property
    def keys_per_consumer(self) -> int:
        """The keys (rows) of one consumer's S^T."""
        return KEYS_PER_WARPGROUP

    @property
    def queries_per_consumer(self) -> int:
        """The queries (columns) of one consumer's S^T."""
        return self.config.tile_m

    @property
    def keeps_scores(self) -> bool:
        """The gradients of score_mod's captured tensors read the scores the mod saw: keep them to dS."""
        mod = self.score_mod
        return mod is not None and len(mod.grads_of) > 0 and mod.grads_read_score

    @property
    def late_derivative(self) -> bool:
        """The score_mod's derivative is not 1 and reads no score: dS^T takes it from the indices."""
        mod = self.score_mod
        return mod is not None and not mod.score_grad_is_identity and not mod.derivative_reads_score

    @property
    def keeps_derivative(self) -> bool:
        """dS^T needs a factor per score kept from the scores' pass: the softcap's tanh, or a score_mod's
        derivative that reads the score."""
        mod = self.score_mod
        return self.has_softcap or (mod is not None and not mod.score_grad_is_identity and mod.derivative_reads_score)

    @property
    def num_threads(self) -> int:
        return THREADS_PER_WARPGROUP * (1 + CONSUMERS)

    @property
    def table_shape(self) -> tuple:
        return mod_tile.table_shape(self.score_mod, self.config.tile_m, KEYS_PER_WARPGROUP, CONSUMERS)

    @staticmethod
    def keys_per_cta(config: BwdConfig) -> int:
        """Keys per CTA under `config`; the host counts a split tail's key blocks by it before building a kernel."""
        return TILE_N

    @property
    def tile_n(self) -> int:
        return self.keys_per_cta(self.config)

    def l2_group(self, seqlen_q: int) -> int:
        """The (KV head, batch) pairs whose queries' Q and dO, read by every key block of the pair, share the L2."""
        query_bytes = (self.head_dim + self.head_dim_v) * self.dtype.width // 8
        return l2_group(seqlen_q * self.qhead_per_kvhead, query_bytes, 1, L2_SHARE_MB)

    def tiled_mmas(self) -> tuple:
        """(S^T and dP^T, dV, dK, dQ): each consumer's 64 keys against all tile_m queries; P^T and dS^T are
        the register A operands of dV and dK, so one tiled MMA serves both."""
        cfg, d = self.config, self.head_dim
        sdp = sm90_utils.make_trivial_tiled_mma(
            self.dtype, self.dtype, OperandMajorMode.K, OperandMajorMode.K, Float32, (1, 1, 1),
            tiler_mn=(KEYS_PER_WARPGROUP, cfg.tile_m))
        dkv = sm90_utils.make_trivial_tiled_mma(
            self.dtype, self.dtype, OperandMajorMode.K, OperandMajorMode.MN, Float32, (1, 1, 1),
            tiler_mn=(KEYS_PER_WARPGROUP, d), a_source=OperandSource.RMEM)
        return sdp, dkv, dkv, dq_accum.tiled_mma(self.dtype, cfg.tile_m, d, cfg.dq_by_rows)

    def smem_layouts(self) -> tuple:
        """(sQ, sdO, sK, sV, sdS): K's columns split in halves for dQ; dS^T in DS_BUFFERS buffers."""
        cfg, d = self.config, self.head_dim
        return (operand_layout(self.dtype, cfg.tile_m, d, cfg.num_stages, True),
                operand_layout(self.dtype, cfg.tile_m, self.head_dim_v, self.do_stages, True),
                operand_layout(self.dtype, TILE_N, d, 1, True, slice_cols=d // dq_accum.WARPGROUPS),
                operand_layout(self.dtype, TILE_N, self.head_dim_v, 1, True),
                operand_layout(self.dtype, cfg.tile_m, TILE_N, DS_BUFFERS, False))

    @cute.jit
    def __call__(
        self,
        mQ: cute.Tensor,  # (batch, seqlen_q, heads, head_dim)
        mK: cute.Tensor,  # (batch, seqlen_k, heads_kv, head_dim)
        mV: cute.Tensor,  # (batch, seqlen_k, heads_kv, head_dim_v)
        mdO: cute.Tensor,  # (batch, seqlen_q, heads, head_dim_v)
        mLSElog2: cute.Tensor,  # (batch, heads, seqlen_q rounded up to tile_m) fp32, 0 past seqlen_q
        mdPsum: cute.Tensor,  # (batch, heads, seqlen_q rounded up to tile_m) fp32, 0 past seqlen_q
        mdQaccum: cute.Tensor,  # (batch, heads, m_blocks, tile_m * head_dim) fp32, zeroed by the preprocess
        mdQturn: Optional[cute.Tensor],  # with deterministic: (batch, heads, m_blocks, CONSUMERS) int32, zeroed
        mdK: cute.Tensor,  # (batch, seqlen_k, heads_kv, head_dim)
        mdV: cute.Tensor,  # (batch, seqlen_k, heads_kv, head_dim_v)
        scale_log2: Float32,  # of the scores held: softmax_scale * log2(e), softcap * log2(e) with has_softcap
        tanh_scale: Float32,  # softmax_scale / softcap with has_softcap
        dk_scale: Float32,  # softmax_scale: dK = dk_scale * dS^T Q
        window_left: Int32,  # with has_window_left
        window_right: Int32,  # with has_window_right
        score_scale: Float32,  # with score_mod: held scores * score_scale are what the mod sees
        mod_tensors: Optional[list],  # the captured tensors of score_mod, then of mask_mod; None if none
        mod_grads: Optional[list],  # fp32, zeroed: gradients of score_mod's captured tensors that require grad
        mBlockCount: Optional[cute.Tensor],  # with mask_mod: (batch, heads_kv, n_blocks) int32, steps to take
        mBlockList: Optional[cute.Tensor],  # with mask_mod: (batch, heads_kv, n_blocks, group * m_blocks) int32
        mBlockTurn: Optional[cute.Tensor],  # with mask_mod and deterministic: each entry's dQ turn, same shape
        # with mask_mod, not deterministic: (tiles,) int32, the launch order (`tile_scheduler.by_work`); the
        # deterministic turns need each key block launched after those before it
        mTileOrder: Optional[cute.Tensor],
        # with split_tail: (parts, rows, head_dim) and (parts, rows, head_dim_v) fp32, the parts of the plain
        # order's last rows // tile_n key blocks, each block's rows together
        mdKtail: Optional[cute.Tensor],
        mdVtail: Optional[cute.Tensor],
        stream: cuda.CUstream,
    ):
        cfg, d, dv = self.config, self.head_dim, self.head_dim_v
        # TMA tiles the two leading modes: (seqlen, head_dim, heads, batch).
        mQ, mK, mV, mdO = [cute.make_tensor(t.iterator, cute.select(t.layout, mode=[1, 3, 2, 0]))
                           for t in (mQ, mK, mV, mdO)]

        tiled_mma_sdp, tiled_mma_dv, tiled_mma_dk, tiled_mma_dq = self.tiled_mmas()
        sQ_layout, sdO_layout, sK_layout, sV_layout, sdS_layout = self.smem_layouts()

        load = cpasync.CopyBulkTensorTileG2SOp()
        tma_q, mQ = cpasync.make_tiled_tma_atom(load, mQ, one_stage(sQ_layout), (cfg.tile_m, d))
        tma_do, mdO = cpasync.make_tiled_tma_atom(load, mdO, one_stage(sdO_layout), (cfg.tile_m, dv))
        tma_k, mK = cpasync.make_tiled_tma_atom(load, mK, one_stage(sK_layout), (self.tile_n, d))
        tma_v, mV = cpasync.make_tiled_tma_atom(load, mV, one_stage(sV_layout), (self.tile_n, dv))
        # The rows' lse and dpsum as (rows, heads, batch), one tile_m row per Q / dO stage.
        row = cute.make_layout(cfg.tile_m)
        tma_lse, mLSElog2 = cpasync.make_tiled_tma_atom(
            load, cute.make_tensor(mLSElog2.iterator, cute.select(mLSElog2.layout, mode=[2, 1, 0])), row,
            (cfg.tile_m,))
        tma_dpsum, mdPsum = cpasync.make_tiled_tma_atom(
            load, cute.make_tensor(mdPsum.iterator, cute.select(mdPsum.layout, mode=[2, 1, 0])), row,
            (cfg.tile_m,))

        @cute.struct
        class SharedStorage:
            q_barriers: cute.struct.MemRange[cutlass.Int64, 2 * cfg.num_stages]
            do_barriers: cute.struct.MemRange[cutlass.Int64, 2 * self.do_stages]
            kv_barriers: cute.struct.MemRange[cutlass.Int64, 2]
            sQ: cute.struct.Align[cute.struct.MemRange[self.dtype, cute.cosize(sQ_layout)], 1024]
            sdO: cute.struct.Align[cute.struct.MemRange[self.dtype, cute.cosize(sdO_layout)], 1024]
            sK: cute.struct.Align[cute.struct.MemRange[self.dtype, cute.cosize(sK_layout)], 1024]
            sV: cute.struct.Align[cute.struct.MemRange[self.dtype, cute.cosize(sV_layout)], 1024]
            sdS: cute.struct.Align[cute.struct.MemRange[self.dtype, cute.cosize(sdS_layout)], 1024]
            sdQ: cute.struct.Align[cute.struct.MemRange[Float32, cfg.tile_m * d], 1024]
            sLSElog2: cute.struct.Align[cute.struct.MemRange[Float32, self.row_stage * cfg.num_stages], 128]
            sdPsum: cute.struct.Align[cute.struct.MemRange[Float32, self.row_stage * self.do_stages], 128]
            sTable: cute.struct.MemRange[Float32, cute.size(self.table_shape)]

        seqlen_k, _, heads_kv, batch = mK.shape
        lists = None
        if cutlass.const_expr(self.mask_mod is not None):
            lists = BlockLists(mBlockCount, mBlockList, mTileOrder, mBlockTurn)
        cta_body = self.cta_body(
            tma_q, mQ, tma_do, mdO, tma_k, mK, tma_v, mV, tma_lse, mLSElog2, tma_dpsum, mdPsum, mdQaccum, mdQturn,
            mdK, mdV, ScoreArgs(scale_log2, tanh_scale, score_scale, window_left, window_right), dk_scale,
            mod_tensors, mod_grads, lists, mdKtail, mdVtail, tiled_mma_sdp, tiled_mma_dv, tiled_mma_dk, tiled_mma_dq,
            sQ_layout, sdO_layout, sK_layout, sV_layout, sdS_layout, SharedStorage)
        grid = (cute.ceil_div(seqlen_k, self.tile_n), heads_kv, batch)
        if cutlass.const_expr(mTileOrder is not None):
            grid = (cute.size(mTileOrder), 1, 1)
        if cutlass.const_expr(self.split_tail):
            grid = (self.tail_order(mK, mdKtail).count(), 1, 1)
        # min_blocks_per_mp pins the register count at entry; without it ptxas may drop setmaxnreg.
        launch(cta_body, grid, self.num_threads, stream,
               smem=SharedStorage.size_in_bytes(), min_blocks_per_mp=1, use_pdl=True,
               owner=f"{type(self).__name__}(head_dim {d}) with {cfg}")

    @cute.kernel
    def cta_body(
        self,
        tma_q: cute.CopyAtom,
        mQ: cute.Tensor,
        tma_do: cute.CopyAtom,
        mdO: cute.Tensor,
        tma_k: cute.CopyAtom,
        mK: cute.Tensor,
        tma_v: cute.CopyAtom,
        mV: cute.Tensor,
        tma_lse: cute.CopyAtom,
        mLSElog2: cute.Tensor,
        tma_dpsum: cute.CopyAtom,
        mdPsum: cute.Tensor,
        mdQaccum: cute.Tensor,
        mdQturn: Optional[cute.Tensor],
        mdK: cute.Tensor,
        mdV: cute.Tensor,
        score_args: ScoreArgs,
        dk_scale: Float32,
        mod_tensors: Optional[list],
        mod_grads: Optional[list],
        lists: Optional[BlockLists],
        mdKtail: Optional[cute.Tensor],
        mdVtail: Optional[cute.Tensor],
        tiled_mma_sdp: cute.TiledMma,
        tiled_mma_dv: cute.TiledMma,
        tiled_mma_dk: cute.TiledMma,
        tiled_mma_dq: cute.TiledMma,
        sQ_layout: cute.ComposedLayout,
        sdO_layout: cute.ComposedLayout,
        sK_layout: cute.ComposedLayout,
        sV_layout: cute.ComposedLayout,
        sdS_layout: cute.ComposedLayout,
        SharedStorage: cutlass.Constexpr,
    ):
        cfg = self.config
        warp_idx = cute.arch.make_warp_uniform(cute.arch.warp_idx())
        seqlen_q, seqlen_k = mQ.shape[0], mK.shape[0]
        by_work = lists.order if cutlass.const_expr(lists is not None) else None
        n_block, kv_head, batch = cta_tile(by_work, (cute.ceil_div(seqlen_k, self.tile_n), *mK.shape[2:]))
        tail, split = None, None
        if cutlass.const_expr(self.split_tail):
            tiles = self.tail_order(mK, mdKtail)
            n_block, kv_head, batch, split, parts = tiles.at_split(cute.arch.block_idx()[0])
            tail = TailPart(parts > 1, mdKtail[split, None, None], mdVtail[split, None, None],
                            (tiles.index(n_block, kv_head, batch) - tiles.whole) * self.tile_n)
        window = Window.of(seqlen_q, seqlen_k, score_args.window_left, score_args.window_right,
                           self.has_window_left, self.has_window_right)
        first_key = n_block * self.tile_n
        m_block_min, m_block_max = window.query_block_range(
            first_key, cutlass.min(first_key + self.tile_n, seqlen_k) - 1, seqlen_q, cfg.tile_m)
        group = self.qhead_per_kvhead
        num_m_blocks = m_block_max - m_block_min
        steps = Steps(kv_head * group, m_block_min, num_m_blocks, num_m_blocks * group, group=group)
        if cutlass.const_expr(self.split_tail):
            first, count = Int32(0), steps.count
            if tail.is_part:
                per_part = cute.ceil_div(steps.count, self.tail_splits)
                first = split * per_part
                count = cutlass.max(cutlass.min(per_part, steps.count - first), 0)
            steps = Steps(kv_head * group, m_block_min, num_m_blocks, count, first=first, group=group)
        if cutlass.const_expr(self.mask_mod is not None):
            turns = lists.turns[batch, kv_head, n_block, None] if cutlass.const_expr(self.deterministic) else None
            steps = Steps(kv_head * group, m_block_min, num_m_blocks, lists.count[batch, kv_head, n_block],
                          lists.entries[batch, kv_head, n_block, None], turns, cute.ceil_div(seqlen_q, cfg.tile_m),
                          group=group)

        if warp_idx == 0:
            for atom in (tma_q, tma_do, tma_k, tma_v, tma_lse, tma_dpsum):
                cpasync.prefetch_descriptor(atom)

        smem = cutlass.memory.SmemAllocator()
        storage = smem.allocate(SharedStorage)
        consumer_warps = CONSUMERS * THREADS_PER_WARPGROUP // cute.arch.WARP_SIZE
        row_bytes = cfg.tile_m * Float32.width // 8  # a stage's lse or dpsum
        q_bytes = cute.size_in_bytes(self.dtype, one_stage(sQ_layout)) + row_bytes
        do_bytes = cute.size_in_bytes(self.dtype, one_stage(sdO_layout)) + row_bytes
        kv_bytes = cute.size_in_bytes(self.dtype, sK_layout) + cute.size_in_bytes(self.dtype, sV_layout)
        pipeline_q = tma.make_pipeline(storage.q_barriers, cfg.num_stages, q_bytes, consumer_warps)
        pipeline_do = tma.make_pipeline(storage.do_barriers, self.do_stages, do_bytes, consumer_warps)
        pipeline_kv = tma.make_pipeline(storage.kv_barriers, 1, kv_bytes, consumer_warps)
        pipeline.pipeline_init_arrive(cluster_shape_mn=(1, 1), is_relaxed=True)
        pipeline.pipeline_init_wait(cluster_shape_mn=(1, 1))

        sQ = storage.sQ.get_tensor(sQ_layout.outer, swizzle=sQ_layout.inner)  # (tile_m, d, stage)
        sdO = storage.sdO.get_tensor(sdO_layout.outer, swizzle=sdO_layout.inner)  # (tile_m, dv, stage)
        sK = storage.sK.get_tensor(sK_layout.outer, swizzle=sK_layout.inner)  # (tile_n, d, 1)
        sV = storage.sV.get_tensor(sV_layout.outer, swizzle=sV_layout.inner)  # (tile_n, dv, 1)
        sdS = storage.sdS.get_tensor(sdS_layout.outer, swizzle=sdS_layout.inner)  # (tile_m, tile_n, buffer)
        sdQ = storage.sdQ.get_tensor(cute.make_layout(cfg.tile_m * self.head_dim))  # one workspace chunk
        sLSElog2, sdPsum = (stat.get_tensor(cute.make_layout((cfg.tile_m, stages), stride=(1, self.row_stage)))
                            for stat, stages in ((storage.sLSElog2, cfg.num_stages),
                                                 (storage.sdPsum, self.do_stages)))  # (tile_m, stage)

        if warp_idx < THREADS_PER_WARPGROUP // cute.arch.WARP_SIZE:
            cute.arch.setmaxregister_decrease(PRODUCER_REGISTERS)
            if warp_idx == 0:
                self.produce(tma_q, mQ, tma_do, mdO, tma_k, mK, tma_v, mV, tma_lse, mLSElog2, tma_dpsum, mdPsum, sQ,
                             sdO, sK, sV, sLSElog2, sdPsum, pipeline_q, pipeline_do, pipeline_kv, n_block, kv_head,
                             batch, steps)
            elif warp_idx < DQ_WRITER_WARP + CONSUMERS:
                self.write_dq(mdQaccum, mdQturn, sdQ, n_block, batch, steps, window, warp_idx - DQ_WRITER_WARP)
        else:
            cute.arch.setmaxregister_increase(CONSUMER_REGISTERS)
            tidx, _, _ = cute.arch.thread_idx()
            wg = cute.arch.make_warp_uniform(tidx // THREADS_PER_WARPGROUP - 1)
            table = mod_tile.difference_table(storage.sTable.get_tensor(cute.make_layout(self.table_shape)), wg,
                                              tidx % THREADS_PER_WARPGROUP, TABLE_BARRIER + wg, KEYS_PER_WARPGROUP)
            mods = mod_tile.ModArgs(score_args.score_scale, mod_tensors, mod_grads, batch, seqlen_q, seqlen_k, table)
            self.consume(mdK, mdV, score_args.scale_log2, score_args.tanh_scale, dk_scale, tiled_mma_sdp,
                         tiled_mma_dv, tiled_mma_dk, tiled_mma_dq, sQ, sdO, sK, sV, sdS, sdQ, sLSElog2, sdPsum,
                         pipeline_q, pipeline_do, pipeline_kv, n_block, kv_head, batch, steps, window, mods,
                         *((tail,) if cutlass.const_expr(self.split_tail) else ()))

    def tail_order(self, mK, mdKtail):
        """A split tail's key blocks, (n_block, kv_head, batch) in the plain order; mK (seqlen_k, head_dim,
        heads_kv, batch), mdKtail (parts, rows, head_dim)."""
        _, _, heads_kv, batch = mK.shape
        n_blocks = cute.ceil_div(mK.shape[0], self.tile_n)
        return TileOrder(n_blocks, heads_kv, batch, splits=self.tail_splits,
                         whole=n_blocks * heads_kv * batch - mdKtail.shape[1] // self.tile_n)
