"""Hopper (sm90) attention backward with the consumers splitting columns: for head_dim 256, and for narrower heads
under `BwdConfig.split_columns` (hdim 192 among them, whose default is `bwd_kernel_wide`).

At these widths a consumer cannot hold dK and dV of all columns for its own 64 keys (2 * 64 * 256 fp32 is
256 registers a thread), so the two consumer warpgroups split the work the other way round: a CTA takes
tile_n keys (`BwdConfig.tile_n`, 64 by default; narrower heads may take 128, `BwdConfig.split_columns`), and
per block of tile_m queries

    consumer c:  S^T, dP^T of all tile_n keys against its half of the queries (tile_n x tile_m / 2)
                 P^T and dS^T of that half into shared memory
    both:        (named barrier: P^T and dS^T of all queries are in shared memory)
    consumer c:  dV[:, half c] += P^T dO[:, half c]                          P^T from shared memory
                 dK[:, half c] += dS^T Q[:, half c]                          dS^T from shared memory
                 dQ[:, half c]  = dS K[:, half c]                            the same dS, read MN-major

so each consumer holds a (tile_n, head_dim / 2) accumulator of dK and of dV, and a (tile_m, head_dim / 2)
one of dQ (wgmmas of 64 rows tile 128 keys or queries). The producer warp, the dQ writer warps, the
pipelines, the masking and the mods are the key-split kernel's (`bwd_kernel`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cutlass
import cutlass.cute as cute
import cutlass.pipeline as pipeline
import cutlass.utils.hopper_helpers as sm90_utils
from cutlass import Float32
from cutlass.cute.nvgpu import OperandMajorMode, warpgroup

from cuteattn.fragments import rowcol
from cuteattn.mods import tile as mod_tile
from cuteattn.sm90 import dq_accum
from cuteattn.sm90.bwd_config import CONSUMERS, DS_BARRIER, DS_BUFFERS, KEYS_PER_WARPGROUP, THREADS_PER_WARPGROUP
from cuteattn.sm90.bwd_kernel import FlashBwdSm90
from cuteattn.sm90.mma import gemm
from cuteattn.sm90.smem import operand_layout, transposed

P_BUFFER, DS_BUFFER = 0, DS_BUFFERS  # shared memory holds P^T in buffers 0, 1 and dS^T in buffers 2, 3


@dataclass(frozen=True)
class FlashBwdSm90SplitD(FlashBwdSm90):

    @staticmethod
    def covers(head_dim: int, head_dim_v: int) -> bool:
        return True

    def __post_init__(self):
        cfg = self.config
        assert not cfg.dq_by_rows, "the split-d kernel splits dQ by columns: dq_by_rows=False"
        assert not self.split_tail, "the split-d kernel takes no split tail (`backward.tail_split`)"
        assert cfg.tile_n % KEYS_PER_WARPGROUP == 0 and cfg.tile_m in (64, 128), \
            f"tile_n {cfg.tile_n} (a multiple of 64), tile_m {cfg.tile_m} (64 or 128)"

    @property
    def table_shape(self) -> tuple:
        """No difference table: the mods read their values in registers."""
        return mod_tile.NO_TABLE

    @staticmethod
    def keys_per_cta(config) -> int:
        return config.tile_n

    @property
    def keys_per_consumer(self) -> int:
        return self.tile_n

    @property
    def queries_per_consumer(self) -> int:
        return self.config.tile_m // CONSUMERS

    def tiled_mmas(self) -> tuple:
        """(S^T and dP^T, dV, dK, dQ): P^T and dS^T come from shared memory (K-major) for dV and dK."""
        cfg, half_v, half = self.config, self.head_dim_v // CONSUMERS, self.head_dim // CONSUMERS

        def mma(b_major, n):
            return sm90_utils.make_trivial_tiled_mma(self.dtype, self.dtype, OperandMajorMode.K, b_major, Float32,
                                                     (1, 1, 1), tiler_mn=(KEYS_PER_WARPGROUP, n))
        return (mma(OperandMajorMode.K, self.queries_per_consumer), mma(OperandMajorMode.MN, half_v),
                mma(OperandMajorMode.MN, half), dq_accum.tiled_mma(self.dtype, cfg.tile_m, self.head_dim))

    def smem_layouts(self) -> tuple:
        """(sQ, sdO, sK, sV, sdS): Q, dO and K split in column halves; P^T and dS^T share one buffer array."""
        cfg, d, dv = self.config, self.head_dim, self.head_dim_v
        return (operand_layout(self.dtype, cfg.tile_m, d, cfg.num_stages, True, slice_cols=d // CONSUMERS),
                operand_layout(self.dtype, cfg.tile_m, dv, cfg.num_stages, True, slice_cols=dv // CONSUMERS),
                operand_layout(self.dtype, self.tile_n, d, 1, True, slice_cols=d // CONSUMERS),
                operand_layout(self.dtype, self.tile_n, dv, 1, True),
                operand_layout(self.dtype, cfg.tile_m, self.tile_n, 2 * DS_BUFFERS, False))

    @cute.jit
    def consume(self, mdK, mdV, scale_log2, tanh_scale, dk_scale, tiled_mma_sdp, tiled_mma_dv, tiled_mma_dk,
                tiled_mma_dq, sQ, sdO, sK, sV, sdS, sdQ, sLSElog2, sdPsum, pipeline_q, pipeline_do, pipeline_kv,
                n_block, kv_head, batch, steps, window, mods):
        cfg, d, dv, rows = self.config, self.head_dim, self.head_dim_v, self.queries_per_consumer
        stages, buffers = cfg.num_stages, 2 * DS_BUFFERS
        tidx, _, _ = cute.arch.thread_idx()
        wg = cute.arch.make_warp_uniform(tidx // THREADS_PER_WARPGROUP - 1)  # keeps its smem descriptors uniform
        wg_tidx = tidx % THREADS_PER_WARPGROUP
        key0 = n_block * self.tile_n

        thr_sdp = tiled_mma_sdp.get_slice(wg_tidx)
        thr_dv = tiled_mma_dv.get_slice(wg_tidx)
        thr_dk = tiled_mma_dk.get_slice(wg_tidx)
        thr_dq = tiled_mma_dq.get_slice(wg_tidx)
        sPdS_t = transposed(sdS)  # (keys, queries, buffer): P^T and dS^T, K-major A operands of dV and dK
        tSrK = tiled_mma_sdp.make_fragment_A(thr_sdp.partition_A(sK))
        tdPrV = tiled_mma_sdp.make_fragment_A(thr_sdp.partition_A(sV))
        tSrQ = tiled_mma_sdp.make_fragment_B(thr_sdp.partition_B(cute.local_tile(sQ, (rows, d, stages), (wg, 0, 0))))
        tdPrdO = tiled_mma_sdp.make_fragment_B(
            thr_sdp.partition_B(cute.local_tile(sdO, (rows, dv, stages), (wg, 0, 0))))
        tdVrP = tiled_mma_dv.make_fragment_A(thr_dv.partition_A(sPdS_t))
        tdVrdO = tiled_mma_dv.make_fragment_B(
            thr_dv.partition_B(cute.local_tile(transposed(sdO), (dv // CONSUMERS, cfg.tile_m, stages), (wg, 0, 0))))
        tdKrdS = tiled_mma_dk.make_fragment_A(thr_dk.partition_A(sPdS_t))
        tdKrQ = tiled_mma_dk.make_fragment_B(
            thr_dk.partition_B(cute.local_tile(transposed(sQ), (d // CONSUMERS, cfg.tile_m, stages), (wg, 0, 0))))
        tdQrdS = tiled_mma_dq.make_fragment_A(thr_dq.partition_A(sdS))
        tdQrK = tiled_mma_dq.make_fragment_B(
            thr_dq.partition_B(cute.local_tile(transposed(sK), (d // CONSUMERS, self.tile_n, 1), (wg, 0, 0))))
        # This consumer's queries of P^T and dS^T, as its S^T accumulator holds them.
        store, thr_store, tPsP = self.score_store(
            tiled_mma_sdp, wg_tidx, cute.local_tile(sPdS_t, (self.tile_n, rows, buffers), (0, wg, 0)))

        # Partitioned ahead: the wgmma issue below rebinds the tiled MMAs' accumulate field in the loop.
        def columns_of(thr, mX, cols):
            tile = (self.tile_n, cols // CONSUMERS)
            return (thr.partition_C(cute.local_tile(mX[batch, None, kv_head, None], tile, (n_block, wg))),
                    thr.partition_C(cute.local_tile(cute.make_identity_tensor((mX.shape[1], cols)), tile,
                                                    (n_block, wg))))
        tdKgdK, tdKcdK = columns_of(thr_dk, mdK, d)
        tdVgdV, tdVcdV = columns_of(thr_dv, mdV, dv)

        acc_s = cute.make_rmem_tensor(thr_sdp.partition_shape_C((self.tile_n, rows)), Float32)
        acc_dp = cute.make_rmem_tensor_like(acc_s)
        acc_dk = cute.make_rmem_tensor(thr_dk.partition_shape_C((self.tile_n, d // CONSUMERS)), Float32)
        acc_dv = cute.make_rmem_tensor(thr_dv.partition_shape_C((self.tile_n, dv // CONSUMERS)), Float32)
        acc_dq = cute.make_rmem_tensor(thr_dq.partition_shape_C((cfg.tile_m, d // CONSUMERS)), Float32)
        acc_dk.fill(0.0)
        acc_dv.fill(0.0)
        tiled_mma_dk.set(warpgroup.Field.ACCUMULATE, True)
        tiled_mma_dv.set(warpgroup.Field.ACCUMULATE, True)
        coords = rowcol(thr_sdp.partition_C(cute.make_identity_tensor((self.tile_n, rows))))
        s, dp = rowcol(acc_s), rowcol(acc_dp)
        p, ds, deriv, scores = self.score_registers(acc_s)
        columns = cute.size(s, mode=[1])
        lse_log2 = cute.make_rmem_tensor((columns,), Float32)
        dpsum = cute.make_rmem_tensor((columns,), Float32)

        pipeline_kv.consumer_wait(pipeline.make_pipeline_state(pipeline.PipelineUserType.Consumer, 1))
        q_state = pipeline.make_pipeline_state(pipeline.PipelineUserType.Consumer, stages)
        do_state = pipeline.make_pipeline_state(pipeline.PipelineUserType.Consumer, stages)
        for step in cutlass.range(steps.count, unroll=1):
            head, m_block, partial = steps.at(step)
            query0 = m_block * cfg.tile_m + wg * rows
            pipeline_q.consumer_wait(q_state)
            gemm(tiled_mma_sdp, acc_s, tSrK[None, None, None, 0], tSrQ[None, None, None, q_state.index], True)
            pipeline_do.consumer_wait(do_state)
            gemm(tiled_mma_sdp, acc_dp, tdPrV[None, None, None, 0], tdPrdO[None, None, None, do_state.index], True)
            for c in cutlass.range_constexpr(columns):
                lse_log2[c] = sLSElog2[coords[0, c][1] + wg * rows, q_state.index]
                dpsum[c] = sdPsum[coords[0, c][1] + wg * rows, do_state.index]
            warpgroup.wait_group(1)
            self.probabilities(s, deriv, scores, coords, lse_log2, scale_log2, tanh_scale, head, key0, query0, window,
                               mods, partial)
            p.store(acc_s.load().to(self.dtype))
            buffer = step % DS_BUFFERS
            cute.copy(store, thr_store.retile(p), tPsP[None, None, None, P_BUFFER + buffer])
            warpgroup.wait_group(0)
            self.score_grads(dp, s, deriv, scores, dpsum, coords, head, key0, query0, mods)
            ds.store(acc_dp.load().to(self.dtype))
            cute.copy(store, thr_store.retile(ds), tPsP[None, None, None, DS_BUFFER + buffer])
            # The wgmmas read P^T and dS^T through the async proxy: order the ordinary stores before them.
            cute.arch.fence_proxy("async.shared", space="cta")
            cute.arch.barrier(barrier_id=DS_BARRIER, number_of_threads=CONSUMERS * THREADS_PER_WARPGROUP)
            gemm(tiled_mma_dv, acc_dv, tdVrP[None, None, None, P_BUFFER + buffer],
                 tdVrdO[None, None, None, do_state.index], False)
            gemm(tiled_mma_dk, acc_dk, tdKrdS[None, None, None, DS_BUFFER + buffer],
                 tdKrQ[None, None, None, q_state.index], False)
            gemm(tiled_mma_dq, acc_dq, tdQrdS[None, None, None, DS_BUFFER + buffer], tdQrK[None, None, None, 0], True)
            warpgroup.wait_group(0)
            pipeline_q.consumer_release(q_state)
            q_state.advance()
            pipeline_do.consumer_release(do_state)
            do_state.advance()
            self.hand_over_dq(acc_dq, sdQ, wg, wg_tidx, step)

        self.write_dkv_from_registers(acc_dk, acc_dv, dk_scale, tdKgdK, tdKcdK, tdVgdV, tdVcdV, window.seqlen_k)
