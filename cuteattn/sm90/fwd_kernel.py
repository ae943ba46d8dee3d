"""Hopper (sm90) attention forward: TMA loads from a producer warp, consumer warpgroups on WGMMA.

Warpgroup 0 produces: one warp loads, per work tile, Q and then K, V block by block into multi-stage
mbarrier pipelines. Each consumer warpgroup owns 64 rows of the Q tile and, per K/V block, computes
S = Q K^T from shared memory, the online softmax in registers, then O += P V with P read from registers.
The epilogue normalizes O, writes the log-sum-exp and stores O through shared memory with TMA.

CTAs loop over work tiles (`cuteattn.tile_scheduler`): one tile per CTA, or persistent CTAs, one per SM,
whose pipelines run on from tile to tile. With pack_gqa, the query heads that share a KV head are packed
into the rows of one tile (row = q_idx * qhead_per_kvhead + head_in_group), so K and V load once for all.

A CTA visits only the K/V blocks its rows see (causal, sliding window) and masks only those across a
window edge or the seqlen_k tail. Softcap turns the scores before masking; a learnable sink joins each
row's sum in the epilogue. Each feature is a compile-time flag: a kernel without it has none of its code.
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
from cutlass.cute.nvgpu.warpgroup import OperandSource, SmemLayoutAtomKind

from cuteattn.fragments import as_a_operand, rowcol
from cuteattn.masking import Window, mask_tile
from cuteattn import softmax
from cuteattn.tile_scheduler import TileScheduler, l2_section

ROWS_PER_WARPGROUP = 64  # the M of one wgmma
THREADS_PER_WARPGROUP = 128
REGISTERS_PER_SM = 65536
PRODUCER_REGISTERS = 24
MAX_REGISTERS = 240
EPILOGUE_BARRIER = 1  # named barriers: + consumer index; 0 is __syncthreads
SCHEDULER_BARRIER = 3


@dataclass(frozen=True)
class FwdConfig:
    """The kernel's tunable choices."""

    tile_n: int = 128
    num_stages: int = 2
    num_consumers: int = 2  # consumer warpgroups; tile_m = 64 * num_consumers
    pingpong: bool = True  # two consumers take turns on the tensor cores, one's softmax under the other's GEMMs
    persistent: bool = False  # one CTA per SM looping over the tiles, instead of one CTA per tile

    @property
    def tile_m(self) -> int:
        return ROWS_PER_WARPGROUP * self.num_consumers


def can_pack_gqa(qhead_per_kvhead: int) -> bool:
    """Whether a group of query heads packs into the rows of a tile: TMA then moves a warpgroup's 64 rows
    as whole groups (or a group as whole 64-row pieces)."""
    return qhead_per_kvhead > 1 and (ROWS_PER_WARPGROUP % qhead_per_kvhead == 0
                                     or qhead_per_kvhead % ROWS_PER_WARPGROUP == 0)


@dataclass(frozen=True)
class PackedWindow(Window):
    """`Window` over packed GQA rows: row r is query r // group."""

    group: int = 1

    def first_key(self, row):
        return super().first_key(row // self.group)

    def end_key(self, row):
        return super().end_key(row // self.group)


def _pack_rows(t: cute.Tensor, head_mode: int, group: int) -> cute.Tensor:
    """`t` with mode 0 (seqlen) and `head_mode` (heads) regrouped: mode 0 becomes (group, seqlen), the heads
    of one KV head fastest, and `head_mode` the KV heads."""
    shape, stride = list(t.layout.shape), list(t.layout.stride)
    shape[0], stride[0] = (group, shape[0]), (stride[head_mode], stride[0])
    shape[head_mode], stride[head_mode] = shape[head_mode] // group, stride[head_mode] * group
    return cute.make_tensor(t.iterator, cute.make_layout(tuple(shape), stride=tuple(stride)))


def _smem_layout(dtype, rows: int, cols: int, stages: int, k_major: bool):
    """A swizzled (rows, cols, stages) layout for wgmma operands: cols contiguous if k_major, else rows."""
    contiguous_bits = (cols if k_major else rows) * dtype.width
    swizzle = next(bits for bits in (1024, 512, 256, 128) if contiguous_bits % bits == 0)
    kinds = {1024: "SW128", 512: "SW64", 256: "SW32", 128: "INTER"}
    kind = getattr(SmemLayoutAtomKind, ("K_" if k_major else "MN_") + kinds[swizzle])
    atom = warpgroup.make_smem_layout_atom(kind, dtype)
    return cute.tile_to_shape(atom, (rows, cols, stages), order=(0, 1, 2) if k_major else (1, 0, 2))


@cute.jit
def gemm_qk(tiled_mma, acc_s, tSrQ, tSrK, stage):
    """Issue S = Q K^T for the K tile in `stage` (asynchronous: one wgmma commit group)."""
    tiled_mma.set(warpgroup.Field.ACCUMULATE, False)
    warpgroup.fence()
    for k in cutlass.range_constexpr(cute.size(tSrQ, mode=[2])):
        cute.gemm(tiled_mma, acc_s, tSrQ[None, None, k], tSrK[None, None, k, stage], acc_s)
        tiled_mma.set(warpgroup.Field.ACCUMULATE, True)
    warpgroup.commit_group()


@cute.jit
def gemm_pv(tiled_mma, acc_o, tOrP, tOrV, stage):
    """Issue O += P V for the V tile in `stage`, P from registers (one wgmma commit group)."""
    warpgroup.fence()
    for k in cutlass.range_constexpr(cute.size(tOrP, mode=[2])):
        cute.gemm(tiled_mma, acc_o, tOrP[None, None, k], tOrV[None, None, k, stage], acc_o)
    warpgroup.commit_group()


@dataclass(frozen=True)
class FlashFwdSm90:
    dtype: Type[cutlass.Numeric]
    head_dim: int
    head_dim_v: int
    qhead_per_kvhead: int
    has_window_left: bool = False  # the sliding window's bounded sides; causal is window_right = 0
    has_window_right: bool = False
    has_softcap: bool = False
    has_sink: bool = False
    pack_gqa: bool = False  # the query heads of a KV head share the rows of a tile
    config: FwdConfig = FwdConfig()

    def __post_init__(self):
        assert self.head_dim_v <= self.head_dim, "O is staged in Q's shared memory"
        assert not self.pack_gqa or can_pack_gqa(self.qhead_per_kvhead)

    @property
    def num_threads(self) -> int:
        return THREADS_PER_WARPGROUP * (1 + self.config.num_consumers)

    @property
    def consumer_registers(self) -> int:
        """What the producer gives up, shared by the consumers (setmaxnreg takes multiples of 8)."""
        per_thread = (REGISTERS_PER_SM - PRODUCER_REGISTERS * THREADS_PER_WARPGROUP) // (
            THREADS_PER_WARPGROUP * self.config.num_consumers)
        return min(MAX_REGISTERS, per_thread // 8 * 8)

    @property
    def rows_per_query(self) -> int:
        """Tile rows per query position: the packed heads, or 1."""
        return self.qhead_per_kvhead if self.pack_gqa else 1

    def window(self, seqlen_q, seqlen_k, window_left, window_right) -> Window:
        """The keys each tile row sees: the window sizes count on the sides this kernel bounds."""
        args = (seqlen_k, seqlen_k - seqlen_q, window_left if self.has_window_left else None,
                window_right if self.has_window_right else None)
        return PackedWindow(*args, group=self.rows_per_query) if self.pack_gqa else Window(*args)

    def scheduler(self, mQ: cute.Tensor, section: Int32) -> TileScheduler:
        _, _, heads, batch = mQ.shape
        return TileScheduler(cute.ceil_div(cute.size(mQ, mode=[0]), self.config.tile_m), heads, batch, section,
                             longest_first=self.has_window_right)

    def block_range(self, window: Window, m_block: Int32, rows: Int32):
        """[n_block_min, n_block_max): the K/V blocks the rows of tile m_block see."""
        first_row = m_block * self.config.tile_m
        return window.block_range(first_row, cutlass.min(first_row + self.config.tile_m, rows) - 1,
                                  self.config.tile_n)

    @cute.jit
    def __call__(
        self,
        mQ: cute.Tensor,  # (batch, seqlen_q, heads, head_dim)
        mK: cute.Tensor,  # (batch, seqlen_k, heads_kv, head_dim)
        mV: cute.Tensor,  # (batch, seqlen_k, heads_kv, head_dim_v)
        mO: cute.Tensor,  # (batch, seqlen_q, heads, head_dim_v)
        mLSE: cute.Tensor,  # (batch, heads, seqlen_q) fp32
        mSink: Optional[cute.Tensor],  # (heads,) fp32 with has_sink, else None
        scale_log2: Float32,  # of the scores held: softmax_scale * log2(e), softcap * log2(e) with has_softcap
        tanh_scale: Float32,  # softmax_scale / softcap with has_softcap
        window_left: Int32,  # with has_window_left
        window_right: Int32,  # with has_window_right
        num_sms: Int32,  # the grid of a persistent kernel
        stream: cuda.CUstream,
    ):
        cfg = self.config
        # TMA tiles the two leading modes: (seqlen, head_dim, heads, batch); V as (head_dim_v, seqlen, ...).
        mQ, mK, mO = [cute.make_tensor(t.iterator, cute.select(t.layout, mode=[1, 3, 2, 0])) for t in (mQ, mK, mO)]
        mV = cute.make_tensor(mV.iterator, cute.select(mV.layout, mode=[3, 1, 2, 0]))
        mLSE = cute.make_tensor(mLSE.iterator, cute.select(mLSE.layout, mode=[2, 1, 0]))
        if cutlass.const_expr(self.pack_gqa):  # rows ((head_in_group, q_idx), ...), heads -> KV heads
            mQ, mO = [_pack_rows(t, 2, self.qhead_per_kvhead) for t in (mQ, mO)]
            mLSE = _pack_rows(mLSE, 1, self.qhead_per_kvhead)

        tiled_mma_qk = sm90_utils.make_trivial_tiled_mma(
            self.dtype, self.dtype, OperandMajorMode.K, OperandMajorMode.K, Float32, (1, 1, 1),
            tiler_mn=(ROWS_PER_WARPGROUP, cfg.tile_n))
        tiled_mma_pv = sm90_utils.make_trivial_tiled_mma(
            self.dtype, self.dtype, OperandMajorMode.K, OperandMajorMode.MN, Float32, (1, 1, 1),
            tiler_mn=(ROWS_PER_WARPGROUP, self.head_dim_v), a_source=OperandSource.RMEM)

        sQ_layout = _smem_layout(self.dtype, ROWS_PER_WARPGROUP, self.head_dim, cfg.num_consumers, True)
        sK_layout = _smem_layout(self.dtype, cfg.tile_n, self.head_dim, cfg.num_stages, True)
        sV_layout = _smem_layout(self.dtype, self.head_dim_v, cfg.tile_n, cfg.num_stages, False)

        def one_stage(layout):
            return cute.slice_(layout, (None, None, 0))

        # Each consumer's O tile sits over its own Q tile: O's stages stride like Q's.
        o_tile = one_stage(_smem_layout(self.dtype, ROWS_PER_WARPGROUP, self.head_dim_v, 1, True))
        q_tile_elems = cute.cosize(one_stage(sQ_layout))
        sO_layout = cute.make_composed_layout(
            o_tile.inner, 0, cute.append(o_tile.outer, cute.make_layout(cfg.num_consumers, stride=q_tile_elems)))

        load = cpasync.CopyBulkTensorTileG2SOp()
        tma_q, mQ = cpasync.make_tiled_tma_atom(load, mQ, one_stage(sQ_layout), (ROWS_PER_WARPGROUP, self.head_dim))
        tma_k, mK = cpasync.make_tiled_tma_atom(load, mK, one_stage(sK_layout), (cfg.tile_n, self.head_dim))
        tma_v, mV = cpasync.make_tiled_tma_atom(load, mV, one_stage(sV_layout), (self.head_dim_v, cfg.tile_n))
        tma_o, mO = cpasync.make_tiled_tma_atom(cpasync.CopyBulkTensorTileS2GOp(), mO, one_stage(sO_layout),
                                                (ROWS_PER_WARPGROUP, self.head_dim_v))

        @cute.struct
        class SharedStorage:
            q_barriers: cute.struct.MemRange[cutlass.Int64, 2]
            k_barriers: cute.struct.MemRange[cutlass.Int64, 2 * cfg.num_stages]
            v_barriers: cute.struct.MemRange[cutlass.Int64, 2 * cfg.num_stages]
            sQ: cute.struct.Align[cute.struct.MemRange[self.dtype, cute.cosize(sQ_layout)], 1024]
            sK: cute.struct.Align[cute.struct.MemRange[self.dtype, cute.cosize(sK_layout)], 1024]
            sV: cute.struct.Align[cute.struct.MemRange[self.dtype, cute.cosize(sV_layout)], 1024]

        section = Int32(1)  # longest first interleaves the heads of an L2 section (tile_scheduler)
        if cutlass.const_expr(self.has_window_right):  # query heads of one KV head share its bytes in L2
            key_bytes = (self.head_dim + self.head_dim_v) * self.dtype.width // 8 / self.qhead_per_kvhead
            _, _, heads, batch = mQ.shape
            section = l2_section(mK.shape[0], key_bytes * self.rows_per_query, heads * batch)
        self.kernel(
            tma_q, mQ, tma_k, mK, tma_v, mV, tma_o, mO, mLSE, mSink, scale_log2, tanh_scale, window_left,
            window_right, section, tiled_mma_qk, tiled_mma_pv, sQ_layout, sK_layout, sV_layout, sO_layout,
            SharedStorage,
        ).launch(
            grid=self.scheduler(mQ, section).grid(num_sms if cfg.persistent else None),
            block=[self.num_threads, 1, 1],
            smem=SharedStorage.size_in_bytes(),
            stream=stream,
        )

    @cute.kernel
    def kernel(
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
        scale_log2: Float32,
        tanh_scale: Float32,
        window_left: Int32,
        window_right: Int32,
        section: Int32,
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
        scheduler = self.scheduler(mQ, section)
        window = self.window(cute.size(mQ, mode=[0]) // self.rows_per_query, mK.shape[0], window_left,
                             window_right)

        if warp_idx == 0:
            for atom in (tma_q, tma_k, tma_v, tma_o):
                cpasync.prefetch_descriptor(atom)

        smem = cutlass.memory.SmemAllocator()
        storage = smem.allocate(SharedStorage)
        consumer_warps = cfg.num_consumers * THREADS_PER_WARPGROUP // cute.arch.WARP_SIZE

        def make_pipeline(barriers, stages, layout, tiles):
            return pipeline.PipelineTmaAsync.create(
                barrier_storage=barriers.data_ptr(),
                num_stages=stages,
                producer_group=pipeline.CooperativeGroup(pipeline.Agent.Thread),
                consumer_group=pipeline.CooperativeGroup(pipeline.Agent.Thread, consumer_warps),
                tx_count=cute.size_in_bytes(self.dtype, cute.slice_(layout, (None, None, 0))) * tiles,
                cta_layout_vmnk=cute.make_layout((1, 1, 1, 1)),
                defer_sync=True,
            )

        # Q's one stage is free again once both consumers have stored the O that overlays it.
        pipeline_q = make_pipeline(storage.q_barriers, 1, sQ_layout, cfg.num_consumers)
        pipeline_k = make_pipeline(storage.k_barriers, cfg.num_stages, sK_layout, 1)
        pipeline_v = make_pipeline(storage.v_barriers, cfg.num_stages, sV_layout, 1)
        pipeline.pipeline_init_arrive(cluster_shape_mn=(1, 1), is_relaxed=True)
        pipeline.pipeline_init_wait(cluster_shape_mn=(1, 1))

        sQ = storage.sQ.get_tensor(sQ_layout.outer, swizzle=sQ_layout.inner)  # (64, d, consumer)
        sK = storage.sK.get_tensor(sK_layout.outer, swizzle=sK_layout.inner)  # (n, d, stage)
        sV = storage.sV.get_tensor(sV_layout.outer, swizzle=sV_layout.inner)  # (dv, n, stage)
        # Each consumer writes its O tile over its own Q tile, which its last GEMM has finished reading.
        sO = storage.sQ.get_tensor(sO_layout.outer, swizzle=sO_layout.inner)  # (64, dv, consumer)

        if warp_idx < THREADS_PER_WARPGROUP // cute.arch.WARP_SIZE:
            cute.arch.setmaxregister_decrease(PRODUCER_REGISTERS)
            if warp_idx == 0:
                self.produce(tma_q, mQ, tma_k, mK, tma_v, mV, sQ, sK, sV, pipeline_q, pipeline_k, pipeline_v,
                             scheduler, window)
        else:
            cute.arch.setmaxregister_increase(self.consumer_registers)
            self.consume(tma_o, mO, mLSE, mSink, scale_log2, tanh_scale, tiled_mma_qk, tiled_mma_pv, sQ, sK, sV, sO,
                         pipeline_q, pipeline_k, pipeline_v, scheduler, window)

    @cute.jit
    def load(self, tma, src, dst, pipe, state):
        """Wait for the stage of `state` to be free, then TMA `src` into it."""
        pipe.producer_acquire(state)
        cute.copy(tma, src, dst[None, state.index], tma_bar_ptr=pipe.producer_get_barrier(state))

    @cute.jit
    def produce(self, tma_q, mQ, tma_k, mK, tma_v, mV, sQ, sK, sV, pipeline_q, pipeline_k, pipeline_v, scheduler,
                window):
        cfg = self.config
        rows = cute.size(mQ, mode=[0])

        def partition(atom, smem, gmem):
            return cpasync.tma_partition(atom, 0, cute.make_layout(1), cute.group_modes(smem, 0, 2),
                                         cute.group_modes(gmem, 0, 2))

        q_state = pipeline.make_pipeline_state(pipeline.PipelineUserType.Producer, 1)
        k_state = pipeline.make_pipeline_state(pipeline.PipelineUserType.Producer, cfg.num_stages)
        v_state = pipeline.make_pipeline_state(pipeline.PipelineUserType.Producer, cfg.num_stages)
        tile = scheduler.initial_tile()
        while tile.is_valid:
            kv_head = tile.head if self.pack_gqa else tile.head // self.qhead_per_kvhead
            tQsQ, tQgQ = partition(tma_q, sQ, cute.local_tile(mQ[None, None, tile.head, tile.batch],
                                                              (ROWS_PER_WARPGROUP, self.head_dim), (None, 0)))
            tKsK, tKgK = partition(tma_k, sK, cute.local_tile(mK[None, None, kv_head, tile.batch],
                                                              (cfg.tile_n, self.head_dim), (None, 0)))
            tVsV, tVgV = partition(tma_v, sV, cute.local_tile(mV[None, None, kv_head, tile.batch],
                                                              (self.head_dim_v, cfg.tile_n), (0, None)))
            n_block_min, n_block_max = self.block_range(window, tile.m_block, rows)
            n_blocks = n_block_max - n_block_min
            # The first K block goes ahead of Q, which waits until the consumers have stored the last tile.
            if n_blocks > 0:
                self.load(tma_k, tKgK[None, n_block_max - 1], tKsK, pipeline_k, k_state)
                k_state.advance()
            pipeline_q.producer_acquire(q_state)
            for wg in cutlass.range_constexpr(cfg.num_consumers):
                cute.copy(tma_q, tQgQ[None, tile.m_block * cfg.num_consumers + wg], tQsQ[None, wg],
                          tma_bar_ptr=pipeline_q.producer_get_barrier(q_state))
            q_state.advance()
            for i in cutlass.range(n_blocks, unroll=1):
                n_block = n_block_max - 1 - i
                self.load(tma_v, tVgV[None, n_block], tVsV, pipeline_v, v_state)
                v_state.advance()
                if i + 1 < n_blocks:
                    self.load(tma_k, tKgK[None, n_block - 1], tKsK, pipeline_k, k_state)
                    k_state.advance()
            tile = scheduler.next_tile(tile)

    @cute.jit
    def wait_turn(self, wg):
        """Ping-pong: wait until the other consumer has issued its GEMMs."""
        if cutlass.const_expr(self.config.pingpong and self.config.num_consumers == 2):
            cute.arch.barrier(barrier_id=SCHEDULER_BARRIER + wg, number_of_threads=2 * THREADS_PER_WARPGROUP)

    @cute.jit
    def pass_turn(self, wg):
        if cutlass.const_expr(self.config.pingpong and self.config.num_consumers == 2):
            cute.arch.barrier_arrive(barrier_id=SCHEDULER_BARRIER + 1 - wg,
                                     number_of_threads=2 * THREADS_PER_WARPGROUP)

    @cute.jit
    def softmax_block(self, s, coords, row_max, row_sum, rescale, scale_log2, tanh_scale, n_block, row0, window):
        """Softcap, mask the score tile where it needs it (the seqlen_k tail, across a window edge), softmax."""
        if cutlass.const_expr(self.has_softcap):
            softmax.softcap(s, tanh_scale)
        col0 = n_block * self.config.tile_n
        if window.needs_mask(row0, row0 + ROWS_PER_WARPGROUP - 1, col0, self.config.tile_n):
            mask_tile(s, coords, row0, col0, window)
        softmax.step(s, row_max, row_sum, scale_log2, rescale)

    @cute.jit
    def consume(self, tma_o, mO, mLSE, mSink, scale_log2, tanh_scale, tiled_mma_qk, tiled_mma_pv, sQ, sK, sV, sO,
                pipeline_q, pipeline_k, pipeline_v, scheduler, window):
        cfg = self.config
        tidx, _, _ = cute.arch.thread_idx()
        wg = tidx // THREADS_PER_WARPGROUP - 1
        wg_tidx = tidx % THREADS_PER_WARPGROUP
        rows = cute.size(mO, mode=[0])

        thr_qk = tiled_mma_qk.get_slice(wg_tidx)
        thr_pv = tiled_mma_pv.get_slice(wg_tidx)
        tSrQ = tiled_mma_qk.make_fragment_A(thr_qk.partition_A(sQ[None, None, wg]))
        tSrK = tiled_mma_qk.make_fragment_B(thr_qk.partition_B(sK))
        tOrV = tiled_mma_pv.make_fragment_B(thr_pv.partition_B(sV))
        tOsO = thr_pv.partition_C(sO[None, None, wg])
        acc_s = cute.make_rmem_tensor(thr_qk.partition_shape_C((ROWS_PER_WARPGROUP, cfg.tile_n)), Float32)
        acc_o = cute.make_rmem_tensor(thr_pv.partition_shape_C((ROWS_PER_WARPGROUP, self.head_dim_v)), Float32)
        tiled_mma_pv.set(warpgroup.Field.ACCUMULATE, True)
        coords = rowcol(thr_qk.partition_C(cute.make_identity_tensor((ROWS_PER_WARPGROUP, cfg.tile_n))))
        s, o = rowcol(acc_s), rowcol(acc_o)
        row_max, row_sum = softmax.init_state(cute.size(s, mode=[0]))
        rescale = cute.make_rmem_tensor_like(row_max)
        lse = cute.make_rmem_tensor_like(row_max)
        sink_log2 = None
        if cutlass.const_expr(self.has_sink):
            sink_log2 = cute.make_rmem_tensor_like(row_max)
        p = cute.make_rmem_tensor_like(acc_s, self.dtype)
        tOrP = as_a_operand(p)
        o_out = cute.make_rmem_tensor_like(acc_o, self.dtype)

        q_state = pipeline.make_pipeline_state(pipeline.PipelineUserType.Consumer, 1)
        k_state = pipeline.make_pipeline_state(pipeline.PipelineUserType.Consumer, cfg.num_stages)
        v_state = pipeline.make_pipeline_state(pipeline.PipelineUserType.Consumer, cfg.num_stages)
        tile = scheduler.initial_tile()
        while tile.is_valid:
            n_block_min, n_block_max = self.block_range(window, tile.m_block, rows)
            n_blocks = n_block_max - n_block_min
            row0 = tile.m_block * cfg.tile_m + wg * ROWS_PER_WARPGROUP
            acc_o.fill(0.0)
            row_max.fill(-Float32.inf)
            row_sum.fill(0.0)
            pipeline_q.consumer_wait(q_state)
            if n_blocks > 0:
                if wg == 1:  # consumer 0 issues first
                    self.pass_turn(wg)
                pipeline_k.consumer_wait(k_state)
                self.wait_turn(wg)
                gemm_qk(tiled_mma_qk, acc_s, tSrQ, tSrK, k_state.index)
                self.pass_turn(wg)
                warpgroup.wait_group(0)
                pipeline_k.consumer_release(k_state)
                k_state.advance()
                self.softmax_block(s, coords, row_max, row_sum, rescale, scale_log2, tanh_scale, n_block_max - 1,
                                   row0, window)
                p.store(acc_s.load().to(self.dtype))
                # Within the warpgroup, the softmax of block j runs while the tensor cores do O += P V of
                # block j + 1 (blocks go from the last one down).
                for i in cutlass.range(1, n_blocks, unroll=1):
                    pipeline_k.consumer_wait(k_state)
                    pipeline_v.consumer_wait(v_state)
                    self.wait_turn(wg)
                    gemm_qk(tiled_mma_qk, acc_s, tSrQ, tSrK, k_state.index)
                    gemm_pv(tiled_mma_pv, acc_o, tOrP, tOrV, v_state.index)
                    self.pass_turn(wg)
                    warpgroup.wait_group(1)
                    pipeline_k.consumer_release(k_state)
                    k_state.advance()
                    self.softmax_block(s, coords, row_max, row_sum, rescale, scale_log2, tanh_scale,
                                       n_block_max - 1 - i, row0, window)
                    warpgroup.wait_group(0)
                    pipeline_v.consumer_release(v_state)
                    v_state.advance()
                    softmax.rescale_rows(o, rescale)
                    p.store(acc_s.load().to(self.dtype))
                pipeline_v.consumer_wait(v_state)
                self.wait_turn(wg)
                gemm_pv(tiled_mma_pv, acc_o, tOrP, tOrV, v_state.index)
                if wg == 0:  # the turns balance per tile: consumer 1 took the first, consumer 0 takes the last
                    self.pass_turn(wg)
                warpgroup.wait_group(0)
                pipeline_v.consumer_release(v_state)
                v_state.advance()

            if cutlass.const_expr(self.has_sink):
                for r in cutlass.range_constexpr(cute.size(sink_log2)):
                    head = self.query_head(tile.head, row0 + coords[r, 0][0])
                    sink_log2[r] = mSink[head] * softmax.LOG2_E
            softmax.finish(o, row_max, row_sum, scale_log2, lse, sink_log2)
            if wg_tidx % 4 == 0:  # the first of the four lanes that share a row
                for r in cutlass.range_constexpr(cute.size(lse)):
                    row = row0 + coords[r, 0][0]
                    if row < rows:
                        mLSE[row, tile.head, tile.batch] = lse[r]

            o_out.store(acc_o.load().to(self.dtype))
            cute.autovec_copy(o_out, tOsO)
            # The TMA engine reads sO through the async proxy: order the ordinary stores before it.
            cute.arch.fence_proxy("async.shared", space="cta")
            cute.arch.barrier(barrier_id=EPILOGUE_BARRIER + wg, number_of_threads=THREADS_PER_WARPGROUP)
            if wg_tidx < cute.arch.WARP_SIZE:
                gO = cute.local_tile(mO[None, None, tile.head, tile.batch], (ROWS_PER_WARPGROUP, self.head_dim_v),
                                     (None, 0))
                tOsO_tma, tOgO = cpasync.tma_partition(tma_o, 0, cute.make_layout(1), cute.group_modes(sO, 0, 2),
                                                       cute.group_modes(gO, 0, 2))
                cute.copy(tma_o, tOsO_tma[None, wg], tOgO[None, tile.m_block * cfg.num_consumers + wg])
                cute.arch.cp_async_bulk_commit_group()
                cute.arch.cp_async_bulk_wait_group(0, read=True)
                cute.arch.sync_warp()  # the lane that issued the store has waited before lane 0 frees Q below
            pipeline_q.consumer_release(q_state)
            q_state.advance()
            tile = scheduler.next_tile(tile)

    def query_head(self, head: Int32, row: Int32) -> Int32:
        """The query head of tile row `row` in a tile of `head` (a KV head when packed)."""
        if self.pack_gqa:
            return head * self.qhead_per_kvhead + row % self.qhead_per_kvhead
        return head
