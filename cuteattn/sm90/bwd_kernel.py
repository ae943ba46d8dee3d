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
from cutlass.cute.nvgpu import OperandMajorMode, cpasync, warpgroup
from cutlass.cute.nvgpu.warpgroup import OperandSource

from cuteattn import softmax
from cuteattn.fragments import as_a_operand, rowcol
from cuteattn.kernel_args import BlockLists, ScoreArgs, launch
from cuteattn.masking import Window, mask_tile, mask_tile_transposed
from cuteattn.mods import tile as mod_tile
from cuteattn.mods.trace import TracedMod
from cuteattn.sm90 import dq_accum, tma
from cuteattn.sm90.mma import gemm, pinned
from cuteattn.sm90.smem import accumulator_store, one_stage, operand_layout, transposed
from cuteattn.tile_scheduler import TileOrder, cta_tile, l2_group

KEYS_PER_WARPGROUP = 64  # the M of one wgmma
CONSUMERS = 2
TILE_N = KEYS_PER_WARPGROUP * CONSUMERS
THREADS_PER_WARPGROUP = 128
# 240 * 256 + 24 * 128 = 168 * 384, what the CTA holds at entry: setmaxnreg.inc waits for the rest.
PRODUCER_REGISTERS = 24
CONSUMER_REGISTERS = 240
DS_BARRIER = 1  # named barrier: both consumers have written their dS^T; 0 is __syncthreads
DQ_FULL_BARRIER = 2  # + consumer index: the consumer's dQ is in shared memory
DQ_EMPTY_BARRIER = 4  # + consumer index: its writer has read that dQ, the buffer is free
DKV_BARRIER = 6  # + consumer index: the consumer's dK and dV are in shared memory
TABLE_BARRIER = 8  # + consumer index: the consumer's difference table (`mods.tile.DifferenceTable`)
DQ_WRITER_WARP = 1  # + consumer index: the producer warpgroup's warp that adds the consumer's dQ
DS_BUFFERS = 2  # one consumer may write step i + 1's dS while the other still reads step i's
L2_SHARE_MB = 16  # under a mask_mod's tile order, the L2 that one group of KV heads' Q and dO may take


@dataclass(frozen=True)
class BwdConfig:
    """The kernel's tunable choices."""

    tile_m: int = 64  # query rows per step: the N of S^T
    num_stages: int = 2  # depth of the Q pipeline, and of dO's unless do_stages
    do_stages: Optional[int] = None  # depth of the dO pipeline where it differs from Q's
    # The dQ GEMM is issued before dK's, and dQ goes to shared memory while dK runs (FA4's order); off: every
    # step waits for dK and dQ together, and its dQ handover runs with no GEMM in flight.
    overlap_dq: bool = False
    # The consumers split dK, dV and dQ by columns, P^T and dS^T through shared memory (`bwd_kernel_split_d`),
    # over tile_n keys per CTA (a multiple of 64); always so where one consumer cannot hold dK and dV of its
    # keys (head_dim > 128 or head_dim_v != head_dim) and head_dim_on_m is off.
    split_columns: bool = False
    # dK^T and dV^T accumulate with the head dim on the wgmma's M, each consumer over tile_n / 2 keys
    # (`bwd_kernel_wide`): hdim 192, where the column split's 64 keys a CTA read each Q and dO tile for few keys;
    # H100, 16k tokens: 358-488 TFLOP/s against the column split's 294-404 (notes-33).
    head_dim_on_m: bool = False
    tile_n: int = 64  # keys per CTA under split_columns or head_dim_on_m; the key split takes 64 per consumer
    # With tile_m 128 (the key split): each consumer's dQ is its 64 queries' rows over all columns, not all
    # rows over half the columns. Half the wgmmas, each twice as wide, so dS is read from shared memory half
    # as often per FLOP (hdim 64: 32 wgmmas a step against 40, like FA4's). hdim 64, H200: 387 TFLOP/s against
    # 374 at 1k, 483 against 463 at 16k (notes-8).
    dq_by_rows: bool = False
    # dK and dV leave through shared memory in 16-byte pieces of whole rows (the key split); off: stored from
    # the accumulators' registers, 4 bytes a lane. H200, 1k: hdim 128 462 TFLOP/s against 439, causal 347
    # against 320 (notes-8).
    stage_dkv: bool = True
    # The launch's last, part-full wave of key blocks split among CTAs where that ends it sooner
    # (`backward.tail_split`); a choice of the host, which compiles the kernel for the parts it takes.
    tail_split: bool = True
    # lse is loaded into registers once the S^T GEMM is issued, dpsum once P^T is computed, each under a GEMM in
    # flight (FA4's order); off, over 64 rows: both before the GEMM they follow; over more, or under a score_mod:
    # read from shared memory where used. With dv_under_fence at 80 rows: hdim 128's unmasked default
    # (`backward.CONFIGS`; faster than 64 rows from 2k up, slower causal: notes-36, -37).
    prefetch_stats: bool = False
    # Over more than 64 rows: the dV GEMM issued before the fence that orders dS^T's stores, which waits for them.
    dv_under_fence: bool = False


@dataclass(frozen=True)
class Steps:
    """The (query head, m_block) pairs a CTA visits, in order: each head of the KV head's group over the
    query blocks [m_block_min, m_block_min + num_m_blocks), or, with a mask_mod, its block list: entries
    2 * (g * m_blocks + m_block) + cut, and with deterministic each entry's dQ turn."""

    first_head: Int32
    m_block_min: Int32
    num_m_blocks: Int32
    count: Int32
    blocks: Optional[cute.Tensor] = None
    turns: Optional[cute.Tensor] = None
    m_blocks: Optional[Int32] = None
    first: Optional[Int32] = None  # a split tail's part: its steps start here
    group: int = 1  # query heads a KV head: with one, a step is its query block, with no division

    def at(self, step):
        """(head, m_block, partial) of a step; partial: the mask_mod cuts it, it must mask it (False without a
        list); the window's edges and the seqlen_k tail are masked wherever they cut, list or none."""
        if self.first is not None:
            step = self.first + step
        if self.blocks is None:
            g, m = self.head_and_block(step, self.num_m_blocks)
            return self.first_head + g, self.m_block_min + m, False
        entry = self.blocks[step]
        g, m = self.head_and_block(entry >> 1, self.m_blocks)
        return self.first_head + g, m, (entry & 1) != 0

    def head_and_block(self, index, m_blocks):
        """(g, m) of index g * m_blocks + m; with one query head a KV head, (0, index), no division."""
        if self.group == 1:
            return 0, index
        return index // m_blocks, index % m_blocks


@dataclass(frozen=True)
class TailPart:
    """Where a CTA of a split tail puts its key block's dK and dV: in the input dtype as usual (a whole block),
    or, a part, its sums over its steps in fp32 into rows row0 onwards of mdK and mdV (rows, head_dim)."""

    is_part: cutlass.Boolean
    mdK: cute.Tensor
    mdV: cute.Tensor
    row0: Int32


@cute.jit
def load_columns(stat: cute.Tensor, smem: cute.Tensor, coords: cute.Tensor, stage):
    """Into `stat`, the thread's value of lse or dpsum per column of S^T (its queries), from `smem`'s `stage`."""
    for c in cutlass.range_constexpr(cute.size(stat)):
        stat[c] = smem[coords[0, c][1], stage]


@dataclass(frozen=True)
class FlashBwdSm90:
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

    @cute.jit
    def produce(self, tma_q, mQ, tma_do, mdO, tma_k, mK, tma_v, mV, tma_lse, mLSElog2, tma_dpsum, mdPsum, sQ, sdO,
                sK, sV, sLSElog2, sdPsum, pipeline_q, pipeline_do, pipeline_kv, n_block, kv_head, batch, steps):
        cfg = self.config
        kv_state = pipeline.make_pipeline_state(pipeline.PipelineUserType.Producer, 1)
        pipeline_kv.producer_acquire(kv_state)
        for atom, smem, gmem, cols in ((tma_k, sK, mK, self.head_dim), (tma_v, sV, mV, self.head_dim_v)):
            tXsX, tXgX = tma.partition(atom, smem, cute.local_tile(gmem[None, None, kv_head, batch],
                                                                   (self.tile_n, cols), (None, 0)))
            cute.copy(atom, tXgX[None, n_block], tXsX[None, 0], tma_bar_ptr=pipeline_kv.producer_get_barrier(kv_state))
        # The preprocess (use_pdl) may still be writing lse_log2, dpsum and the zeroed dQ workspace. The consumers
        # read them only from the stages loaded below, the writer warps add into dQ after their steps: all after this.
        cute.arch.griddepcontrol_wait()

        q_state = pipeline.make_pipeline_state(pipeline.PipelineUserType.Producer, cfg.num_stages)
        do_state = pipeline.make_pipeline_state(pipeline.PipelineUserType.Producer, self.do_stages)
        for step in cutlass.range(steps.count, unroll=1):
            head, m_block, _ = steps.at(step)
            tQsQ, tQgQ = tma.partition(tma_q, sQ, cute.local_tile(mQ[None, None, head, batch],
                                                                  (cfg.tile_m, self.head_dim), (None, 0)))
            tdOsdO, tdOgdO = tma.partition(tma_do, sdO, cute.local_tile(mdO[None, None, head, batch],
                                                                        (cfg.tile_m, self.head_dim_v), (None, 0)))
            tLsL, tLgL = tma.partition(tma_lse, sLSElog2, cute.local_tile(mLSElog2[None, head, batch], (cfg.tile_m,),
                                                                         (None,)))
            tDsD, tDgD = tma.partition(tma_dpsum, sdPsum, cute.local_tile(mdPsum[None, head, batch], (cfg.tile_m,),
                                                                          (None,)))
            tma.load(tma_q, pipeline_q, q_state, tQgQ[None, m_block], tQsQ)
            tma.load_more(tma_lse, pipeline_q, q_state, tLgL[None, m_block], tLsL)
            q_state.advance()
            tma.load(tma_do, pipeline_do, do_state, tdOgdO[None, m_block], tdOsdO)
            tma.load_more(tma_dpsum, pipeline_do, do_state, tDgD[None, m_block], tDsD)
            do_state.advance()

    @cute.jit
    def probabilities(self, s, deriv, scores, coords, lse_log2, scale_log2, tanh_scale, head, key0, query0, window,
                      mods, partial):
        """S^T -> P^T in place (S -> P without `transposed_scores`); lse_log2 holds the thread's queries, by
        column (by row). `deriv` receives d(new score)/d(held score) where it is not 1: the softcap's
        1 - tanh^2, times the score_mod's derivative; `scores` what the score_mod saw, when kept."""
        if cutlass.const_expr(self.has_softcap):
            softmax.softcap(s, tanh_scale)
            for i in cutlass.range_constexpr(cute.size(s)):
                deriv[i] = (1.0 - s[i] * s[i]).to(self.dtype)
        place = mods.place(head, query0, key0, transposed=self.transposed_scores)
        score_tensors, mask_tensors = mods.split(self.score_mod)
        if cutlass.const_expr(self.score_mod is not None):
            mod_tile.score_mod_with_derivative(self.score_mod, score_tensors, s, deriv, coords, place,
                                               mods.score_scale, chain=self.has_softcap, scores=scores,
                                               with_derivative=not self.late_derivative)
        # The padding queries' lse_log2 is 0, and a score_mod may give them scores that overflow exp2 (inf times
        # their zero dO is NaN in dV): mask them.
        padding = self.score_mod is not None
        last_query = query0 + self.queries_per_consumer - 1
        cut = window.needs_mask(query0, last_query, key0, self.keys_per_consumer)
        if cutlass.const_expr(padding):
            cut = cut | (last_query >= window.seqlen_q)
        # Told the branch is warp-uniform, ptxas keeps the pipeline stages in uniform registers; else the
        # column-split step at hdim 192 builds every wgmma descriptor through R2UR (545 instructions against 345).
        if cute.arch.make_warp_uniform(cut) != 0:
            if cutlass.const_expr(self.transposed_scores):
                mask_tile_transposed(s, coords, key0, query0, window, self.keys_per_consumer,
                                     self.queries_per_consumer, padding_queries=padding)
            else:
                mask_tile(s, coords, query0, key0, window, self.keys_per_consumer,
                          padding_rows=self.queries_per_consumer if padding else 0)
        if cutlass.const_expr(self.mask_mod is not None):
            if partial:  # full blocks of the block sparsity need no mask
                mod_tile.apply_mask_mod(self.mask_mod, mask_tensors, s, coords, place)
        for c in cutlass.range_constexpr(cute.size(s, mode=[1])):
            for r in cutlass.range_constexpr(cute.size(s, mode=[0])):
                s[r, c] = cute.math.exp2(s[r, c] * scale_log2 - self.of_query(lse_log2, r, c), fastmath=True)

    def of_query(self, stat, r, c):
        """A thread's value of lse or dpsum for its score (r, c): the queries are the columns of S^T, the rows of S."""
        return stat[c] if self.transposed_scores else stat[r]

    @cute.jit
    def score_grads(self, dp, p, deriv, scores, dpsum, coords, head, key0, query0, mods):
        """dP^T -> dS^T = P^T * (dP^T - dpsum) in place (dP -> dS without `transposed_scores`), through the
        score_mod and the softcap's tanh; the gradients of the score_mod's captured tensors are added on the way."""
        for c in cutlass.range_constexpr(cute.size(dp, mode=[1])):
            for r in cutlass.range_constexpr(cute.size(dp, mode=[0])):
                dp[r, c] = p[r, c] * (dp[r, c] - self.of_query(dpsum, r, c))
        if cutlass.const_expr(self.score_mod is not None and len(self.score_mod.grads_of) > 0):
            score_tensors, _ = mods.split(self.score_mod)
            mod_tile.add_captured_grads(self.score_mod, score_tensors, mods.grads, dp, scores, coords,
                                        mods.place(head, query0, key0, transposed=self.transposed_scores))
        if cutlass.const_expr(self.keeps_derivative):
            for i in cutlass.range_constexpr(cute.size(dp)):
                dp[i] = dp[i] * deriv[i].to(Float32)
        if cutlass.const_expr(self.late_derivative):
            score_tensors, _ = mods.split(self.score_mod)
            mod_tile.times_derivative(self.score_mod, score_tensors, dp, coords,
                                      mods.place(head, query0, key0, transposed=self.transposed_scores))

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
    def score_registers(self, acc_s):
        """(p, ds, deriv, scores) beside the S^T accumulator: P^T and dS^T in the input dtype; deriv, in dS's
        registers until dS, d(new score)/d(held score); scores, what the score_mod saw when the gradients of
        its captured tensors read it (else None)."""
        p = cute.make_rmem_tensor_like(acc_s, self.dtype)
        ds = cute.make_rmem_tensor_like(acc_s, self.dtype)
        scores = None
        if cutlass.const_expr(self.keeps_scores):
            scores = rowcol(cute.make_rmem_tensor_like(acc_s, self.dtype))
        return p, ds, rowcol(ds), scores

    def score_store(self, tiled_mma_sdp, wg_tidx, tile):
        """(copy, its thread slice, the slice's part of `tile`): P^T or dS^T from registers in the S^T
        accumulator's layout into shared memory by stmatrix, four 8x8 tiles a warp per instruction."""
        store, thr = accumulator_store(self.dtype, tiled_mma_sdp, wg_tidx)
        return store, thr, thr.partition_D(tile)

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

    @cute.jit
    def write_dkv_from_registers(self, acc_dk, acc_dv, dk_scale, tdKgdK, tdKcdK, tdVgdV, tdVcdV, seqlen_k):
        """dK * dk_scale and dV in the input dtype, the rows of keys before seqlen_k, stored from the
        accumulators' registers (always so in the column-split kernel: its shared memory has no room to stage
        them)."""
        acc_dk.store(acc_dk.load() * dk_scale)
        for acc, dst, coord in ((acc_dk, tdKgdK, tdKcdK), (acc_dv, tdVgdV, tdVcdV)):
            out = cute.make_rmem_tensor_like(acc, self.dtype)
            out.store(acc.load().to(self.dtype))
            for i in cutlass.range_constexpr(cute.size(out)):
                if coord[i][0] < seqlen_k:
                    dst[i] = out[i]

    @cute.jit
    def write_dkv(self, tiled_mma_dkv, acc_dk, acc_dv, dk_scale, sK, sV, mdK, mdV, kv_head, batch, key0, seqlen_k,
                  wg, wg_tidx, transposed_acc: cutlass.Constexpr = False):
        """dK * dk_scale and dV of this consumer's keys in the input dtype, the rows before seqlen_k. They go out
        through its rows of sK and sV, in 16-byte pieces of whole rows: from the registers, a warp's store would
        cover 8 rows by 4 bytes a lane, half of each 32-byte sector it touches. `transposed_acc`: the
        accumulators hold dK^T and dV^T (`bwd_kernel_wide`)."""
        keys = self.keys_per_consumer
        acc_dk.store(acc_dk.load() * dk_scale)
        # Both consumers' dQ GEMMs read all of sK: the other one's last must be done before its rows change.
        cute.arch.barrier(barrier_id=DS_BARRIER, number_of_threads=CONSUMERS * THREADS_PER_WARPGROUP)
        store, thr = accumulator_store(self.dtype, tiled_mma_dkv, wg_tidx, transpose=transposed_acc)
        staged = [cute.local_tile(s, (keys, cute.size(s, mode=[1]), 1), (wg, 0, 0))[None, None, 0] for s in (sK, sV)]
        for acc, tile in zip((acc_dk, acc_dv), staged):
            out = cute.make_rmem_tensor_like(acc, self.dtype)
            out.store(acc.load().to(self.dtype))
            cute.copy(store, thr.retile(out), thr.partition_D(transposed(tile) if transposed_acc else tile))
        cute.arch.barrier(barrier_id=DKV_BARRIER + wg, number_of_threads=THREADS_PER_WARPGROUP)
        vector = 128 // self.dtype.width
        for tile, mX in zip(staged, (mdK, mdV)):
            cols = cute.size(tile, mode=[1])
            rows = cute.local_tile(mX[batch, None, kv_head, None], (keys, cols), (key0 // keys, 0))
            src, dst = cute.zipped_divide(tile, (1, vector)), cute.zipped_divide(rows, (1, vector))
            per_row = cols // vector
            assert keys * per_row % THREADS_PER_WARPGROUP == 0, "whole 16-byte pieces a thread"
            for k in cutlass.range_constexpr(keys * per_row // THREADS_PER_WARPGROUP):
                piece = wg_tidx + k * THREADS_PER_WARPGROUP
                row, col = piece // per_row, piece % per_row
                if key0 + row < seqlen_k:
                    dst[None, (row, col)].store(src[None, (row, col)].load())

    @cute.jit
    def consume(self, mdK, mdV, scale_log2, tanh_scale, dk_scale, tiled_mma_sdp, tiled_mma_dv, tiled_mma_dk,
                tiled_mma_dq, sQ, sdO, sK, sV, sdS, sdQ, sLSElog2, sdPsum, pipeline_q, pipeline_do, pipeline_kv,
                n_block, kv_head, batch, steps, window, mods, tail=None):
        cfg, d = self.config, self.head_dim
        tiled_mma_dkv = tiled_mma_dk  # the same MMA as dV's: equal head dims
        tidx, _, _ = cute.arch.thread_idx()
        wg = cute.arch.make_warp_uniform(tidx // THREADS_PER_WARPGROUP - 1)  # keeps its smem descriptors uniform
        wg_tidx = tidx % THREADS_PER_WARPGROUP
        key0 = n_block * self.tile_n + wg * KEYS_PER_WARPGROUP

        thr_sdp = tiled_mma_sdp.get_slice(wg_tidx)
        thr_dkv = tiled_mma_dkv.get_slice(wg_tidx)
        thr_dq = tiled_mma_dq.get_slice(wg_tidx)
        my_keys = (KEYS_PER_WARPGROUP, d, 1)
        tSrK = tiled_mma_sdp.make_fragment_A(thr_sdp.partition_A(cute.local_tile(sK, my_keys, (wg, 0, 0))))
        tdPrV = tiled_mma_sdp.make_fragment_A(thr_sdp.partition_A(cute.local_tile(sV, my_keys, (wg, 0, 0))))
        tSrQ = tiled_mma_sdp.make_fragment_B(thr_sdp.partition_B(sQ))
        tdPrdO = tiled_mma_sdp.make_fragment_B(thr_sdp.partition_B(sdO))
        tdVrdO = tiled_mma_dkv.make_fragment_B(thr_dkv.partition_B(transposed(sdO)))
        tdKrQ = tiled_mma_dkv.make_fragment_B(thr_dkv.partition_B(transposed(sQ)))
        half = d // dq_accum.WARPGROUPS
        my_half_of_k = cute.local_tile(transposed(sK), (half, self.tile_n, 1), (wg, 0, 0))
        if cutlass.const_expr(dq_accum.swapped(cfg.tile_m)):  # dQ^T = K^T dS^T
            tdQrK = tiled_mma_dq.make_fragment_A(thr_dq.partition_A(my_half_of_k))
            tdQrdS = tiled_mma_dq.make_fragment_B(thr_dq.partition_B(sdS))
        elif cutlass.const_expr(cfg.dq_by_rows):  # this consumer's queries of dS, all of K
            my_rows_of_ds = cute.local_tile(sdS, (cfg.tile_m // CONSUMERS, self.tile_n, DS_BUFFERS), (wg, 0, 0))
            tdQrdS = tiled_mma_dq.make_fragment_A(thr_dq.partition_A(my_rows_of_ds))
            tdQrK = tiled_mma_dq.make_fragment_B(thr_dq.partition_B(transposed(sK)))
        else:
            tdQrdS = tiled_mma_dq.make_fragment_A(thr_dq.partition_A(sdS))
            tdQrK = tiled_mma_dq.make_fragment_B(thr_dq.partition_B(my_half_of_k))
        # (K blocks pinned one by one outnumber the uniform registers here: 14 words spilled at hdim 128.)
        tSrK, tdPrV, tdQrK = (pinned(t[None, None, None, 0]) for t in (tSrK, tdPrV, tdQrK))
        tSrQ, tdPrdO, tdVrdO, tdKrQ, tdQrdS = (pinned(t) for t in (tSrQ, tdPrdO, tdVrdO, tdKrQ, tdQrdS))
        # This consumer's keys of dS^T.
        store_ds, thr_store_ds, tdSsdS = self.score_store(
            tiled_mma_sdp, wg_tidx,
            cute.local_tile(transposed(sdS), (KEYS_PER_WARPGROUP, cfg.tile_m, DS_BUFFERS), (wg, 0, 0)))

        acc_s = cute.make_rmem_tensor(thr_sdp.partition_shape_C((KEYS_PER_WARPGROUP, cfg.tile_m)), Float32)
        acc_dp = cute.make_rmem_tensor_like(acc_s)
        acc_dk = cute.make_rmem_tensor(thr_dkv.partition_shape_C((KEYS_PER_WARPGROUP, d)), Float32)
        acc_dv = cute.make_rmem_tensor_like(acc_dk)
        acc_dq = cute.make_rmem_tensor(thr_dq.partition_shape_C(dq_accum.tile(cfg.tile_m, d, cfg.dq_by_rows)),
                                        Float32)
        acc_dk.fill(0.0)
        acc_dv.fill(0.0)
        tiled_mma_dkv.set(warpgroup.Field.ACCUMULATE, True)
        coords = rowcol(thr_sdp.partition_C(cute.make_identity_tensor((KEYS_PER_WARPGROUP, cfg.tile_m))))
        s, dp = rowcol(acc_s), rowcol(acc_dp)
        p, ds, deriv, scores = self.score_registers(acc_s)
        tdVrP, tdKrdS = as_a_operand(p), as_a_operand(ds)
        # Over more than 64 query rows the registers hold little beside the accumulators (lean): each thread's
        # columns of lse and dpsum are read from shared memory where used, the exps run while the dP GEMM is in
        # flight, P^T and dS^T are computed in place in fp32 before either is packed (no fp32 copy of P^T lives
        # beside the packed one), and the dV GEMM waits until dS^T is in shared memory: issued before, its
        # register operand beside S^T and dP^T makes ptxas serialize every wgmma (C7512). Over 64 the dV GEMM
        # runs under the dS^T math.
        lean = cfg.tile_m > KEYS_PER_WARPGROUP
        # A score_mod's step holds its own values across the exps: lse and dpsum stay in shared memory there too
        # (rel_bias at hdim 128: 853 instructions a step with 35 spilled words, read ahead; 764 and none).
        prefetch = cfg.prefetch_stats
        ahead = not (lean or self.score_mod is not None or prefetch)
        stats_in_smem = not (ahead or prefetch)
        columns = cute.size(s, mode=[1])
        lse_log2 = cute.make_rmem_tensor((columns,), Float32)
        dpsum = cute.make_rmem_tensor((columns,), Float32)
        # lse or dpsum of each score's column (its query), per stage, in S^T's register layout.
        tLsL, tDsD = (thr_sdp.partition_C(cute.make_tensor(stat.iterator, cute.make_layout(
            (KEYS_PER_WARPGROUP, cfg.tile_m, stages), stride=(0, 1, self.row_stage))))
            for stat, stages in ((sLSElog2, cfg.num_stages), (sdPsum, self.do_stages)))

        pipeline_kv.consumer_wait(pipeline.make_pipeline_state(pipeline.PipelineUserType.Consumer, 1))
        q_state = pipeline.make_pipeline_state(pipeline.PipelineUserType.Consumer, cfg.num_stages)
        do_state = pipeline.make_pipeline_state(pipeline.PipelineUserType.Consumer, self.do_stages)
        for step in cutlass.range(steps.count, unroll=1):
            head, m_block, partial = steps.at(step)
            query0 = m_block * cfg.tile_m
            # Over 64 rows, lse and dpsum are loaded ahead of the GEMM they follow, not behind its wgmmas in the
            # MIO queue (ncu, hdim 64: those loads were 13% of the consumers' stall samples).
            pipeline_q.consumer_wait(q_state)
            if cutlass.const_expr(ahead):
                load_columns(lse_log2, sLSElog2, coords, q_state.index)
            gemm(tiled_mma_sdp, acc_s, tSrK, tSrQ[None, None, None, q_state.index], True)
            if cutlass.const_expr(prefetch):
                load_columns(lse_log2, sLSElog2, coords, q_state.index)
            pipeline_do.consumer_wait(do_state)
            if cutlass.const_expr(ahead):
                load_columns(dpsum, sdPsum, coords, do_state.index)
            gemm(tiled_mma_sdp, acc_dp, tdPrV, tdPrdO[None, None, None, do_state.index], True)
            lse_cols, dpsum_cols = lse_log2, dpsum
            if cutlass.const_expr(stats_in_smem):
                lse_cols = rowcol(tLsL[None, None, None, q_state.index])[0, None]
                dpsum_cols = rowcol(tDsD[None, None, None, do_state.index])[0, None]
            warpgroup.wait_group(1)  # S^T
            self.probabilities(s, deriv, scores, coords, lse_cols, scale_log2, tanh_scale, head, key0, query0, window,
                               mods, partial)
            if cutlass.const_expr(prefetch):
                load_columns(dpsum, sdPsum, coords, do_state.index)
            if cutlass.const_expr(lean):
                warpgroup.wait_group(0)  # dP^T
                self.score_grads(dp, s, deriv, scores, dpsum_cols, coords, head, key0, query0, mods)
            p.store(acc_s.load().to(self.dtype))
            if cutlass.const_expr(not lean):
                gemm(tiled_mma_dkv, acc_dv, tdVrP, tdVrdO[None, None, None, do_state.index], False)
                warpgroup.wait_group(1)
                self.score_grads(dp, s, deriv, scores, dpsum_cols, coords, head, key0, query0, mods)
            ds.store(acc_dp.load().to(self.dtype))
            if cutlass.const_expr(not cfg.overlap_dq):
                gemm(tiled_mma_dkv, acc_dk, tdKrdS, tdKrQ[None, None, None, q_state.index], False)

            buffer = step % DS_BUFFERS
            cute.copy(store_ds, thr_store_ds.retile(ds), tdSsdS[None, None, None, buffer])
            if cutlass.const_expr(lean and cfg.dv_under_fence):
                gemm(tiled_mma_dkv, acc_dv, tdVrP, tdVrdO[None, None, None, do_state.index], False)
            # The dQ wgmma reads dS through the async proxy: order the ordinary stores before it.
            cute.arch.fence_proxy("async.shared", space="cta")
            if cutlass.const_expr(lean and not cfg.dv_under_fence):
                gemm(tiled_mma_dkv, acc_dv, tdVrP, tdVrdO[None, None, None, do_state.index], False)
            cute.arch.barrier(barrier_id=DS_BARRIER, number_of_threads=CONSUMERS * THREADS_PER_WARPGROUP)
            if cutlass.const_expr(dq_accum.swapped(cfg.tile_m)):
                gemm(tiled_mma_dq, acc_dq, tdQrK, tdQrdS[None, None, None, buffer], True)
            else:
                gemm(tiled_mma_dq, acc_dq, tdQrdS[None, None, None, buffer], tdQrK, True)
            if cutlass.const_expr(cfg.overlap_dq):
                gemm(tiled_mma_dkv, acc_dk, tdKrdS, tdKrQ[None, None, None, q_state.index], False)
                warpgroup.wait_group(1)  # dV and dQ
                # The dV GEMM was dO's last reader: its stage is free for the step after next while dK runs.
                pipeline_do.consumer_release(do_state)
                self.hand_over_dq(acc_dq, sdQ, wg, wg_tidx, step)
            warpgroup.wait_group(0)
            pipeline_q.consumer_release(q_state)
            q_state.advance()
            if cutlass.const_expr(not cfg.overlap_dq):
                pipeline_do.consumer_release(do_state)
            do_state.advance()
            if cutlass.const_expr(not cfg.overlap_dq):
                self.hand_over_dq(acc_dq, sdQ, wg, wg_tidx, step)

        if cutlass.const_expr(tail is not None):
            if tail.is_part:
                acc_dk.store(acc_dk.load() * dk_scale)
                for acc, mX in ((acc_dk, tail.mdK), (acc_dv, tail.mdV)):
                    mine = cute.local_tile(mX, (KEYS_PER_WARPGROUP, d), (tail.row0 // KEYS_PER_WARPGROUP + wg, 0))
                    cute.autovec_copy(acc, thr_dkv.partition_C(mine))
            else:
                self.store_dkv(tiled_mma_dkv, acc_dk, acc_dv, dk_scale, sK, sV, mdK, mdV, kv_head, batch, key0,
                               window.seqlen_k, wg, wg_tidx)
        else:
            self.store_dkv(tiled_mma_dkv, acc_dk, acc_dv, dk_scale, sK, sV, mdK, mdV, kv_head, batch, key0,
                           window.seqlen_k, wg, wg_tidx)

    @cute.jit
    def store_dkv(self, tiled_mma_dkv, acc_dk, acc_dv, dk_scale, sK, sV, mdK, mdV, kv_head, batch, key0, seqlen_k,
                  wg, wg_tidx):
        """dK * dk_scale and dV of this consumer's keys, staged (`write_dkv`) or from the registers."""
        d = self.head_dim
        if cutlass.const_expr(self.config.stage_dkv):
            self.write_dkv(tiled_mma_dkv, acc_dk, acc_dv, dk_scale, sK, sV, mdK, mdV, kv_head, batch, key0,
                           seqlen_k, wg, wg_tidx)
        else:
            thr_dkv = tiled_mma_dkv.get_slice(wg_tidx)
            mine = (KEYS_PER_WARPGROUP, d)
            tdKgdK, tdVgdV = (thr_dkv.partition_C(cute.local_tile(mX[batch, None, kv_head, None], mine,
                                                                   (key0 // KEYS_PER_WARPGROUP, 0)))
                              for mX in (mdK, mdV))
            tdKcdK = thr_dkv.partition_C(cute.local_tile(cute.make_identity_tensor((mdK.shape[1], d)), mine,
                                                         (key0 // KEYS_PER_WARPGROUP, 0)))
            self.write_dkv_from_registers(acc_dk, acc_dv, dk_scale, tdKgdK, tdKcdK, tdVgdV, tdKcdK, seqlen_k)
