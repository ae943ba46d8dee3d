"""Hopper (sm90) attention forward: TMA loads from a producer warp, consumer warpgroups on WGMMA.

Warpgroup 0 produces: one warp loads Q once and K, V block by block into multi-stage mbarrier pipelines.
Each consumer warpgroup owns 64 rows of the Q tile and, per K/V block, computes S = Q K^T from shared
memory, the online softmax in registers, then O += P V with P read from registers. The epilogue
normalizes O, writes the log-sum-exp and stores O through shared memory with TMA.

Split-KV (`split_kv`): a tile's keys are shared among several CTAs, each writing its part's normalized O in fp32
and its log-sum-exp, which `fwd_combine` merges; for launches of fewer tiles than SMs, as in decoding. A split
tail (`split_tail`) does so for the launch's last tiles only, which would otherwise leave most SMs idle in the
last wave.

A CTA visits only the K/V blocks its rows see (causal, sliding window) and masks only those across a
window edge or the seqlen_k tail. Softcap turns the scores before masking; a learnable sink joins each
row's sum in the epilogue. Each feature is a compile-time flag: a kernel without it has none of its code.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional, Type

import cuda.bindings.driver as cuda

import cutlass
import cutlass.cute as cute
import cutlass.pipeline as pipeline
import cutlass.utils.hopper_helpers as sm90_utils
from cutlass import Float32, Int32
from cutlass.cute.nvgpu import OperandMajorMode, cpasync, warpgroup
from cutlass.cute.nvgpu.warpgroup import OperandSource

from cuteattn.fragments import rowcol
from cuteattn.masking import Window
from cuteattn.mods import tile as mod_tile
from cuteattn.mods.trace import TracedMod
from cuteattn import softmax
from cuteattn.kernel_args import BlockLists, ScoreArgs, launch
from cuteattn.sm90 import tma
from cuteattn.sm90.fwd_config import (EPILOGUE_BARRIER, MAX_CONSUMERS, MAX_REGISTERS, PRODUCER_REGISTERS,
                                      Q_PINNED_HEAD_DIM, REGISTERS_PER_SM, ROWS_PER_WARPGROUP, THREADS_PER_WARPGROUP,
                                      FwdConfig)
from cuteattn.sm90.fwd_epilogue import FwdEpilogue
from cuteattn.sm90.fwd_mainloop import FwdMainloop, Gemms, Rows, TileRows
from cuteattn.sm90.mma import pinned, pinned_k_blocks
from cuteattn.sm90.smem import one_stage, operand_layout
from cuteattn.tile_scheduler import FEED_STAGES, TileFeed, TileOrder, grid_size, l2_group, split_blocks


def packed_rows(layout: cute.Layout, pack: int, row_mode: int, head_mode: int) -> cute.Layout:
    """A layout of queries and heads (q, out: (batch, seqlen, heads, dim); lse: (batch, heads, seqlen)) as one of
    packed rows (`packed_modes`). TMA takes the row mode as two of its dimensions, so a tile of rows reads (writes)
    pack heads of several queries at once, where pack divides the tile's rows."""
    shape, stride = packed_modes(layout.shape, layout.stride, pack, row_mode, head_mode)
    return cute.make_layout(shape, stride=stride)


def packed_modes(shape: tuple, stride: tuple, pack: int, row_mode: int, head_mode: int) -> tuple:
    """(shape, stride) with (pack, seqlen) in the row mode and heads // pack in the head mode: row r of KV head g
    (r = j + pack * i, CuTe's order within a mode) is query i of head g * pack + j."""
    shape, stride = list(shape), list(stride)
    seqlen, heads = shape[row_mode], shape[head_mode]
    row_stride, head_stride = stride[row_mode], stride[head_mode]
    shape[row_mode], stride[row_mode] = (pack, seqlen), (head_stride, row_stride)
    shape[head_mode], stride[head_mode] = heads // pack, head_stride * pack
    return tuple(shape), tuple(stride)


@dataclass(frozen=True)
class FlashFwdSm90(FwdMainloop, FwdEpilogue):
    dtype: Type[cutlass.Numeric]
    head_dim: int
    head_dim_v: int
    qhead_per_kvhead: int
    has_window_left: bool = False  # the sliding window's bounded sides; causal is window_right = 0
    has_window_right: bool = False
    has_softcap: bool = False
    has_sink: bool = False
    score_mod: Optional[TracedMod] = None
    mask_mod: Optional[TracedMod] = None
    config: FwdConfig = FwdConfig()
    pack_gqa: int = 1  # query heads of a KV head packed into a tile's rows (`packed_rows`), dividing 64
    split_kv: bool = False  # mO, mLSE: each split's part, fp32, the split mode first (`fwd_combine`)
    # The launch's last tiles (as many as mTailO's rows take) split into this many parts each, a compile-time
    # count: a tile index divided by a run-time one goes through the FP reciprocal, in vector registers, and with
    # it every pipeline stage, so that each wgmma descriptor passes through R2UR (`forward.tail_split`).
    tail_splits: int = 1

    def __post_init__(self):
        assert 1 <= self.config.num_consumers <= MAX_CONSUMERS
        assert self.pack_gqa == 1 or (self.qhead_per_kvhead == 1 and not self.has_sink and self.score_mod is None
                                      and self.mask_mod is None), "packed rows carry no head or query index"
        assert ROWS_PER_WARPGROUP % self.pack_gqa == 0, "a TMA box of 64 rows takes whole groups of heads"
        assert not (self.split_kv or self.split_tail) or (not self.has_sink and self.mask_mod is None), \
            "the sink joins a row once, and a mask_mod's block list is not split"
        assert not self.split_tail or (not self.split_kv and not self.has_window_right and self.pack_gqa == 1), \
            "a split tail takes the last tiles of the plain order"
        # Claimed, a tile's key blocks (read from shared memory) would put the pipeline stages in vector registers.
        assert not (self.split_tail and self.config.persistent), "a split tail is for a grid of one CTA a tile"
        assert self.head_dim_v <= self.head_dim, "O is staged in Q's shared memory"

    @property
    def split_tail(self) -> bool:
        """mTailO, mTailLSE: the parts of the launch's last tiles."""
        return self.tail_splits > 1

    @property
    def num_threads(self) -> int:
        return THREADS_PER_WARPGROUP * (1 + self.config.num_consumers)

    @property
    def table_shape(self) -> tuple:
        return mod_tile.table_shape(self.score_mod, ROWS_PER_WARPGROUP, self.config.tile_n, self.config.num_consumers)

    @property
    def consumer_registers(self) -> int:
        """What the producer gives up, shared by the consumers (setmaxnreg takes multiples of 8)."""
        per_thread = (REGISTERS_PER_SM - PRODUCER_REGISTERS * THREADS_PER_WARPGROUP) // (
            THREADS_PER_WARPGROUP * self.config.num_consumers)
        return min(MAX_REGISTERS, per_thread // 8 * 8)

    @cute.jit
    def __call__(
        self,
        mQ: cute.Tensor,  # (batch, seqlen_q, heads, head_dim)
        mK: cute.Tensor,  # (batch, seqlen_k, heads_kv, head_dim)
        mV: cute.Tensor,  # (batch, seqlen_k, heads_kv, head_dim_v)
        mO: cute.Tensor,  # (batch, seqlen_q, heads, head_dim_v); split_kv: (splits, batch, ...) fp32
        mLSE: cute.Tensor,  # (batch, heads, seqlen_q) fp32; split_kv: (splits, batch, heads, seqlen_q)
        mSink: Optional[cute.Tensor],  # (heads,) fp32 with has_sink, else None
        scale_log2: Float32,  # of the scores held: softmax_scale * log2(e), softcap * log2(e) with has_softcap
        tanh_scale: Float32,  # softmax_scale / softcap with has_softcap
        window_left: Int32,  # with has_window_left
        window_right: Int32,  # with has_window_right
        score_scale: Float32,  # with score_mod: held scores * score_scale are what the mod sees
        mod_tensors: Optional[list],  # the captured tensors of score_mod, then of mask_mod; None if none
        # with mask_mod: (batch, heads, m_blocks, 2) int32, the key blocks to visit and how many are partial
        mBlockCount: Optional[cute.Tensor],
        # with mask_mod: (batch, heads, m_blocks, n_blocks) 4 * n_block + 2 * cut + partial, the partial blocks first
        mBlockList: Optional[cute.Tensor],
        mTileOrder: Optional[cute.Tensor],  # with mask_mod: (tiles,) int32, the launch order (`tile_scheduler.by_work`)
        max_ctas: Int32,  # with config.persistent: the CTAs to launch at most (the SMs)
        mTileCounter: Optional[cute.Tensor],  # with config.dynamic: (1,) int32, 0 (`tile_scheduler.tile_counter`)
        # with split_tail: (parts, rows, head_dim_v) and (parts, rows) fp32, the parts of the last rows // tile_m
        # tiles in the plain order, each tile's rows together
        mTailO: Optional[cute.Tensor],
        mTailLSE: Optional[cute.Tensor],
        stream: cuda.CUstream,
    ):
        cfg = self.config
        if cutlass.const_expr(self.pack_gqa > 1):
            mQ = cute.make_tensor(mQ.iterator, packed_rows(mQ.layout, self.pack_gqa, 1, 2))
            if cutlass.const_expr(not self.split_kv):  # split-KV's parts are allocated as packed rows
                mO = cute.make_tensor(mO.iterator, packed_rows(mO.layout, self.pack_gqa, 1, 2))
                mLSE = cute.make_tensor(mLSE.iterator, packed_rows(mLSE.layout, self.pack_gqa, 2, 1))
        # TMA tiles the two leading modes: (seqlen, head_dim, heads, batch); V as (head_dim_v, seqlen, ...).
        # Split-KV's parts: (seqlen, head_dim_v, heads, batch, split), lse (seqlen, heads, batch, split).
        mQ, mK = [cute.make_tensor(t.iterator, cute.select(t.layout, mode=[1, 3, 2, 0])) for t in (mQ, mK)]
        mV = cute.make_tensor(mV.iterator, cute.select(mV.layout, mode=[3, 1, 2, 0]))
        o_modes, lse_modes = ([2, 4, 3, 1, 0], [3, 2, 1, 0]) if cutlass.const_expr(self.split_kv) else (
            [1, 3, 2, 0], [2, 1, 0])
        mO = cute.make_tensor(mO.iterator, cute.select(mO.layout, mode=o_modes))
        mLSE = cute.make_tensor(mLSE.iterator, cute.select(mLSE.layout, mode=lse_modes))

        tiled_mma_qk = sm90_utils.make_trivial_tiled_mma(
            self.dtype, self.dtype, OperandMajorMode.K, OperandMajorMode.K, Float32, (1, 1, 1),
            tiler_mn=(ROWS_PER_WARPGROUP, cfg.tile_n))
        tiled_mma_pv = sm90_utils.make_trivial_tiled_mma(
            self.dtype, self.dtype, OperandMajorMode.K, OperandMajorMode.MN, Float32, (1, 1, 1),
            tiler_mn=(ROWS_PER_WARPGROUP, self.head_dim_v), a_source=OperandSource.RMEM)

        sQ_layout = operand_layout(self.dtype, ROWS_PER_WARPGROUP, self.head_dim, cfg.num_consumers, True)
        sK_layout = operand_layout(self.dtype, cfg.tile_n, self.head_dim, cfg.num_stages, True)
        sV_layout = operand_layout(self.dtype, self.head_dim_v, cfg.tile_n, cfg.num_stages, False)

        # Each consumer's O tile sits over its own Q tile (O's stages stride like Q's), or, persistent, in O's own
        # buffer.
        o_tile = one_stage(operand_layout(self.dtype, ROWS_PER_WARPGROUP, self.head_dim_v, 1, True))
        o_stride = cute.cosize(o_tile) if cfg.persistent else cute.cosize(one_stage(sQ_layout))
        sO_layout = cute.make_composed_layout(
            o_tile.inner, 0, cute.append(o_tile.outer, cute.make_layout(cfg.num_consumers, stride=o_stride)))
        o_elems = cute.cosize(sO_layout) if cfg.persistent else 0

        load = cpasync.CopyBulkTensorTileG2SOp()
        tma_q, mQ = cpasync.make_tiled_tma_atom(load, mQ, one_stage(sQ_layout), (ROWS_PER_WARPGROUP, self.head_dim))
        tma_k, mK = cpasync.make_tiled_tma_atom(load, mK, one_stage(sK_layout), (cfg.tile_n, self.head_dim))
        tma_v, mV = cpasync.make_tiled_tma_atom(load, mV, one_stage(sV_layout), (self.head_dim_v, cfg.tile_n))
        tma_o = None  # split-KV's fp32 parts are stored from registers
        if cutlass.const_expr(not self.split_kv):
            tma_o, mO = cpasync.make_tiled_tma_atom(cpasync.CopyBulkTensorTileS2GOp(), mO, one_stage(sO_layout),
                                                    (ROWS_PER_WARPGROUP, self.head_dim_v))

        feed_stages = FEED_STAGES if cfg.dynamic else 0

        @cute.struct
        class SharedStorage:
            q_barriers: cute.struct.MemRange[cutlass.Int64, 2]
            k_barriers: cute.struct.MemRange[cutlass.Int64, 2 * cfg.num_stages]
            v_barriers: cute.struct.MemRange[cutlass.Int64, 2 * cfg.num_stages]
            sQ: cute.struct.Align[cute.struct.MemRange[self.dtype, cute.cosize(sQ_layout)], 1024]
            sK: cute.struct.Align[cute.struct.MemRange[self.dtype, cute.cosize(sK_layout)], 1024]
            sV: cute.struct.Align[cute.struct.MemRange[self.dtype, cute.cosize(sV_layout)], 1024]
            sO: cute.struct.Align[cute.struct.MemRange[self.dtype, o_elems], 1024]
            sTable: cute.struct.MemRange[Float32, cute.size(self.table_shape)]
            feed_barriers: cute.struct.MemRange[cutlass.Int64, 2 * feed_stages]
            feed_slots: cute.struct.MemRange[Int32, feed_stages]

        if cutlass.const_expr(self.split_tail):  # (rows, head_dim_v, part), lse (rows, part)
            mTailO = cute.make_tensor(mTailO.iterator, cute.select(mTailO.layout, mode=[1, 2, 0]))
            mTailLSE = cute.make_tensor(mTailLSE.iterator, cute.select(mTailLSE.layout, mode=[1, 0]))
        lists = None
        if cutlass.const_expr(self.mask_mod is not None):
            lists = BlockLists(mBlockCount, mBlockList, mTileOrder)
        cta_body = self.cta_body(
            tma_q, mQ, tma_k, mK, tma_v, mV, tma_o, mO, mLSE, mSink,
            ScoreArgs(scale_log2, tanh_scale, score_scale, window_left, window_right), mod_tensors, lists,
            mTileCounter, mTailO, mTailLSE, tiled_mma_qk, tiled_mma_pv, sQ_layout, sK_layout, sV_layout, sO_layout,
            SharedStorage)
        tiles = self.tile_order(mQ, mK, mO, lists, mTailO).count()
        launch(cta_body, (grid_size(tiles, max_ctas, cfg.persistent), 1, 1), self.num_threads, stream,
               smem=SharedStorage.size_in_bytes(),
               owner=f"{type(self).__name__}(head_dim {self.head_dim}) with {cfg}")

    @cute.kernel
    def cta_body(
        self,
        tma_q: cute.CopyAtom,
        mQ: cute.Tensor,
        tma_k: cute.CopyAtom,
        mK: cute.Tensor,
        tma_v: cute.CopyAtom,
        mV: cute.Tensor,
        tma_o: cute.CopyAtom,
        mO: cute.Tensor,
        mLSE: cute.Tensor,
        mSink: Optional[cute.Tensor],
        score_args: ScoreArgs,
        mod_tensors: Optional[list],
        lists: Optional[BlockLists],
        mTileCounter: Optional[cute.Tensor],
        mTailO: Optional[cute.Tensor],
        mTailLSE: Optional[cute.Tensor],
        tiled_mma_qk: cute.TiledMma,
        tiled_mma_pv: cute.TiledMma,
        sQ_layout: cute.ComposedLayout,
        sK_layout: cute.ComposedLayout,
        sV_layout: cute.ComposedLayout,
        sO_layout: cute.ComposedLayout,
        SharedStorage: cutlass.Constexpr,
    ):
        cfg = self.config
        warp_idx = cute.arch.make_warp_uniform(cute.arch.warp_idx())
        tiles = self.tile_order(mQ, mK, mO, lists, mTailO)
        seqlen_q, seqlen_k = cute.size(mQ, mode=[0]), mK.shape[0]
        window = Window.of(seqlen_q, seqlen_k, score_args.window_left, score_args.window_right,
                           self.has_window_left, self.has_window_right, self.pack_gqa)
        work = functools.partial(self.work, tiles, window, seqlen_q, lists)

        if warp_idx == 0:
            for atom in (tma_q, tma_k, tma_v, tma_o):
                if cutlass.const_expr(atom is not None):
                    cpasync.prefetch_descriptor(atom)

        smem = cutlass.memory.SmemAllocator()
        storage = smem.allocate(SharedStorage)
        consumer_warps = cfg.num_consumers * THREADS_PER_WARPGROUP // cute.arch.WARP_SIZE
        tile_bytes = [cute.size_in_bytes(self.dtype, one_stage(layout)) for layout in (sQ_layout, sK_layout, sV_layout)]
        pipeline_q = tma.make_pipeline(storage.q_barriers, 1, tile_bytes[0] * cfg.num_consumers, consumer_warps)
        pipeline_k = tma.make_pipeline(storage.k_barriers, cfg.num_stages, tile_bytes[1], consumer_warps)
        pipeline_v = tma.make_pipeline(storage.v_barriers, cfg.num_stages, tile_bytes[2], consumer_warps)
        feed = TileFeed.create(tiles.count(), mTileCounter, storage, cfg.num_consumers * THREADS_PER_WARPGROUP)
        pipeline.pipeline_init_arrive(cluster_shape_mn=(1, 1), is_relaxed=True)
        pipeline.pipeline_init_wait(cluster_shape_mn=(1, 1))

        sQ = storage.sQ.get_tensor(sQ_layout.outer, swizzle=sQ_layout.inner)  # (64, d, consumer)
        sK = storage.sK.get_tensor(sK_layout.outer, swizzle=sK_layout.inner)  # (n, d, stage)
        sV = storage.sV.get_tensor(sV_layout.outer, swizzle=sV_layout.inner)  # (dv, n, stage)
        # Each consumer writes its O tile over its own Q tile, which its last GEMM has finished reading (or,
        # persistent, into O's own buffer).
        o_storage = storage.sO if cutlass.const_expr(cfg.persistent) else storage.sQ
        sO = o_storage.get_tensor(sO_layout.outer, swizzle=sO_layout.inner)  # (64, dv, consumer)
        sTable = storage.sTable.get_tensor(cute.make_layout(self.table_shape))

        if warp_idx < THREADS_PER_WARPGROUP // cute.arch.WARP_SIZE:
            cute.arch.setmaxregister_decrease(PRODUCER_REGISTERS)
            if warp_idx == 0:
                self.produce(tma_q, mQ, tma_k, mK, tma_v, mV, sQ, sK, sV, pipeline_q, pipeline_k, pipeline_v, feed,
                             work)
        else:
            cute.arch.setmaxregister_increase(self.consumer_registers)
            self.consume(tma_o, mO, mLSE, mSink, score_args, mod_tensors, mTailO, mTailLSE, tiled_mma_qk,
                         tiled_mma_pv, sQ, sK, sV, sO, sTable, pipeline_q, pipeline_k, pipeline_v, feed, tiles, work,
                         window, seqlen_q, seqlen_k)

    def tile_order(self, mQ, mK, mO, lists, mTailO):
        """The tiles of the launch; mQ (seqlen, head_dim, heads, batch), mK (seqlen, head_dim, heads, batch);
        mO, with split_kv, has the splits last; lists: a mask_mod's block lists, which order them, or None; mTailO,
        with split_tail, (rows, head_dim_v, part)."""
        _, _, heads, batch = mQ.shape
        m_blocks = cute.ceil_div(cute.size(mQ, mode=[0]), self.config.tile_m)
        splits, whole = None, None
        if cutlass.const_expr(self.split_kv):
            splits = mO.shape[4]
        if cutlass.const_expr(self.split_tail):
            splits, whole = self.tail_splits, m_blocks * heads * batch - mTailO.shape[0] // self.config.tile_m
        return TileOrder(m_blocks, heads, batch, longest_first=self.has_window_right,
                         group=self.l2_group(mK.shape[0]), by_work=lists.order if cutlass.const_expr(
                             lists is not None) else None, splits=splits, whole=whole)

    def l2_group(self, seqlen_k):
        """The (head, batch) pairs whose K and V share the L2, by the tile order."""
        key_bytes = (self.head_dim + self.head_dim_v) * self.dtype.width // 8
        return l2_group(seqlen_k, key_bytes, self.qhead_per_kvhead, self.config.l2_share_mb)

    @cute.jit
    def work(self, tiles, window, seqlen_q, lists, tile):
        """Tile `tile`: (m_block, head, batch, n_block_max, n_blocks, blocks, n_partial, split, parts); `blocks`
        the key blocks to visit from a mask_mod's block sparsity, its first n_partial partial, or None:
        n_block_max - 1 down; split into parts, those of its split (`split_blocks`), else split and parts are
        None."""
        m_block, head, batch, split, parts = tiles.at_split(tile)
        first_row = m_block * self.config.tile_m
        n_block_min, n_block_max = window.block_range(
            first_row, cutlass.min(first_row + self.config.tile_m, seqlen_q) - 1, self.config.tile_n)
        if cutlass.const_expr(self.split_kv or self.split_tail):
            n_block_min, n_block_max = split_blocks(n_block_min, n_block_max, split, parts)
        n_blocks = n_block_max - n_block_min
        blocks, n_partial = None, n_blocks
        if cutlass.const_expr(self.mask_mod is not None):
            n_blocks = lists.count[batch, head, m_block, 0]
            n_partial = lists.count[batch, head, m_block, 1]
            blocks = lists.entries[batch, head, m_block, None]
        return m_block, head, batch, n_block_max, n_blocks, blocks, n_partial, split, parts

    @cute.jit
    def consume(self, tma_o, mO, mLSE, mSink, score_args, mod_tensors, mTailO, mTailLSE, tiled_mma_qk, tiled_mma_pv,
                sQ, sK, sV, sO, sTable, pipeline_q, pipeline_k, pipeline_v, feed, tiles, work, window, seqlen_q,
                seqlen_k):
        cfg = self.config
        tidx, _, _ = cute.arch.thread_idx()
        wg = cute.arch.make_warp_uniform(tidx // THREADS_PER_WARPGROUP - 1)  # keeps its smem descriptors uniform
        wg_tidx = tidx % THREADS_PER_WARPGROUP
        # The difference table's barrier is the epilogue's: the same threads.
        table = mod_tile.difference_table(sTable, wg, wg_tidx, EPILOGUE_BARRIER + wg, cfg.tile_n)

        thr_qk = tiled_mma_qk.get_slice(wg_tidx)
        thr_pv = tiled_mma_pv.get_slice(wg_tidx)
        tSrQ = tiled_mma_qk.make_fragment_A(thr_qk.partition_A(sQ[None, None, wg]))
        tSrK = tiled_mma_qk.make_fragment_B(thr_qk.partition_B(sK))
        tOrV = tiled_mma_pv.make_fragment_B(thr_pv.partition_B(sV))
        # Q's K blocks in uniform registers up to head_dim 128; past it they outnumber those, go to vector
        # registers and reach each wgmma through R2UR.
        tSrQ = pinned_k_blocks(tSrQ) if self.head_dim <= Q_PINNED_HEAD_DIM else pinned(tSrQ)
        gemms = Gemms(tiled_mma_qk, tiled_mma_pv, tSrQ, pinned(tSrK), pinned(tOrV), pipeline_k, pipeline_v)
        acc_s = cute.make_rmem_tensor(thr_qk.partition_shape_C((ROWS_PER_WARPGROUP, cfg.tile_n)), Float32)
        acc_o = cute.make_rmem_tensor(thr_pv.partition_shape_C((ROWS_PER_WARPGROUP, self.head_dim_v)), Float32)
        tiled_mma_pv.set(warpgroup.Field.ACCUMULATE, True)
        coords = rowcol(thr_qk.partition_C(cute.make_identity_tensor((ROWS_PER_WARPGROUP, cfg.tile_n))))
        row_max, row_sum = softmax.init_state(cute.size(rowcol(acc_s), mode=[0]))
        rows = Rows(acc_s, acc_o, cute.make_rmem_tensor_like(acc_s, self.dtype), coords, row_max, row_sum,
                    cute.make_rmem_tensor_like(row_max))

        q_state = pipeline.make_pipeline_state(pipeline.PipelineUserType.Consumer, 1)
        k_state = pipeline.make_pipeline_state(pipeline.PipelineUserType.Consumer, cfg.num_stages)
        v_state = pipeline.make_pipeline_state(pipeline.PipelineUserType.Consumer, cfg.num_stages)
        feed_state = TileFeed.state(pipeline.PipelineUserType.Consumer)
        tile_idx = feed.take(feed_state.clone(), cute.arch.block_idx()[0])
        feed_state.advance()
        while tile_idx < feed.count:
            m_block, head, batch, n_block_max, n_blocks, blocks, n_partial, split, parts = work(tile_idx)
            row0 = m_block * cfg.tile_m + wg * ROWS_PER_WARPGROUP
            mods = mod_tile.ModArgs(score_args.score_scale, mod_tensors, [], batch, seqlen_q, seqlen_k, table)
            # Under causal or a right window a tile reaches further than its first consumers' rows: each
            # consumer starts from its own last key block, passing the turns of the blocks above it.
            own_max = n_block_max
            if cutlass.const_expr(self.mask_mod is None and self.has_window_right):
                last_row = cutlass.min(row0 + ROWS_PER_WARPGROUP, seqlen_q) - 1
                own_max = cutlass.min(n_block_max, window.block_range(row0, last_row, cfg.tile_n)[1])
            skip = n_block_max - own_max
            tile = TileRows(head, row0, own_max, blocks, window, mods, score_args.scale_log2, score_args.tanh_scale)
            acc_o.fill(0.0)
            row_max.fill(-Float32.inf)
            row_sum.fill(0.0)
            pipeline_q.consumer_wait(q_state)
            # A consumer whose rows all lie past seqlen_q (in the last tile, where tile_m does not divide it)
            # computes nothing: at hdim 64's 192 rows and seqlen 1k, a ninth of the rows. Nor one whose rows see
            # none of the tile's keys: its O and lse are those of rows with every key masked.
            has_rows = row0 < seqlen_q
            # Persistent, O has its own buffer: Q is free after the tile's last S GEMM, and the next tile's Q loads
            # under this tile's last P V and epilogue.
            free_q = functools.partial(pipeline_q.consumer_release, q_state) if cfg.persistent else None
            if n_blocks > 0:  # (states advance outside the branch, which the DSL does not carry them out of)
                if has_rows and skip < n_blocks:
                    self.mainloop(gemms, rows, tile, k_state.clone(), v_state.clone(), n_blocks, n_partial,
                                  skip, wg, free_q)
                else:
                    self.pass_blocks(gemms, k_state.clone(), v_state.clone(), n_blocks, wg)
            k_state.advance(n_blocks)
            v_state.advance(n_blocks)
            if cutlass.const_expr(cfg.persistent):
                if n_blocks == 0 or not has_rows or skip >= n_blocks:  # no mainloop freed it
                    pipeline_q.consumer_release(q_state)
            if has_rows:
                if cutlass.const_expr(self.split_kv):
                    block = (row0 // ROWS_PER_WARPGROUP,)
                    self.store_part(cute.local_tile(mO[None, None, head, batch, split], (ROWS_PER_WARPGROUP,
                                                    self.head_dim_v), (*block, 0)),
                                    cute.local_tile(mLSE[None, head, batch, split], (ROWS_PER_WARPGROUP,), block),
                                    tiled_mma_pv, rows, tile, seqlen_q, wg_tidx)
                elif cutlass.const_expr(self.split_tail):
                    if parts > 1:  # the tail's rows follow its tiles: (tile - whole) * tile_m + row - first_row
                        block = ((tiles.index(m_block, head, batch) - tiles.whole) * cfg.num_consumers + wg,)
                        self.store_part(cute.local_tile(mTailO[None, None, split], (ROWS_PER_WARPGROUP,
                                                        self.head_dim_v), (*block, 0)),
                                        cute.local_tile(mTailLSE[None, split], (ROWS_PER_WARPGROUP,), block),
                                        tiled_mma_pv, rows, tile, seqlen_q, wg_tidx)
                    else:
                        self.epilogue(tma_o, mO, mLSE, mSink, tiled_mma_pv, rows, tile, sO, m_block, batch,
                                      seqlen_q, wg, wg_tidx)
                else:
                    self.epilogue(tma_o, mO, mLSE, mSink, tiled_mma_pv, rows, tile, sO, m_block, batch, seqlen_q,
                                  wg, wg_tidx)
            if cutlass.const_expr(not cfg.persistent):
                # Q's stage is free once every consumer warp is done: the warp that stored O waited for its read.
                pipeline_q.consumer_release(q_state)
            q_state.advance()
            tile_idx = feed.take(feed_state.clone(), tile_idx + cute.arch.grid_dim()[0])
            feed_state.advance()
