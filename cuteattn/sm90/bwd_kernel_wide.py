"""Hopper (sm90) attention backward with the head dim on the wgmma's M (`BwdConfig.head_dim_on_m`): for wide
heads (head_dim 192), where a consumer cannot hold dK and dV of all columns for 64 keys, yet splitting the
columns (`bwd_kernel_split_d`) leaves a CTA only 64 keys to read each Q and dO tile for.

A CTA takes tile_n keys (96), each consumer warpgroup tile_n / 2 of them (48, less than a wgmma's M), and
accumulates their gradients transposed, the head dim on M. Per block of tile_m (64) queries, consumer c:

    S    = Q K_c^T,  dP = dO V_c^T                   (tile_m, keys_c): queries on the rows, lse by row
    P    = exp2(S * scale_log2 - lse_log2)           into shared memory
    dV_c^T += dO^T P                                 (head_dim_v, keys_c), both operands in shared memory
    dS   = P * (dP - dpsum)                          into shared memory
    dK_c^T += Q^T dS                                 (head_dim, keys_c)
    (named barrier: the dS of both consumers is in shared memory)
    dQ[:, half c] = dS K[:, half c]                  over all tile_n keys, added into the workspace

A consumer reads only its own keys' P, and its own dS but for dQ: before it stores dS again it waits for the
other consumer's last dQ GEMM (one buffer each; at head_dim_v 192 a second one leaves no room). At the end dK^T
and dV^T go out through shared memory, transposed by stmatrix.trans into rows of keys, or, in a split tail's
part (`bwd_kernel`), in fp32 from the registers. The producer, the dQ writer warps, the masking and the mods are the
key-split kernel's (`bwd_kernel`).
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
from cuteattn.sm90.bwd_config import CONSUMERS, DS_BARRIER, THREADS_PER_WARPGROUP
from cuteattn.sm90.bwd_kernel import FlashBwdSm90
from cuteattn.sm90.mma import gemm
from cuteattn.sm90.smem import accumulator_store, operand_layout, transposed

P_SLOT, DS_SLOT = 0, 1  # shared memory holds P and dS of all tile_n keys, each consumer's keys side by side
DS_FREE_BARRIER = 10  # + consumer index: its last dQ GEMM has read both consumers' dS
ACCUMULATOR_REGISTERS = 144  # of a consumer thread's 240 for dK^T and dV^T; S, dP and dQ take 48 each
TILE_N = 96  # 48 keys a consumer: at hdim 192, dK^T and dV^T over 64 would take 192 registers a thread


@dataclass(frozen=True)
class FlashBwdSm90Wide(FlashBwdSm90):

    @staticmethod
    def covers(head_dim: int, head_dim_v: int) -> bool:
        """Head dims that are whole wgmma Ms and whose dK^T and dV^T over a consumer's keys fit the registers."""
        return head_dim % 64 == 0 and head_dim_v % 64 == 0 and \
            (head_dim + head_dim_v) * (TILE_N // CONSUMERS) // THREADS_PER_WARPGROUP <= ACCUMULATOR_REGISTERS

    def __post_init__(self):
        cfg = self.config
        assert self.covers(self.head_dim, self.head_dim_v), f"head dims {self.head_dim}, {self.head_dim_v}"
        assert not cfg.dq_by_rows, "dQ by columns"
        self.check_split_tail()
        assert cfg.tile_m == 64 and cfg.tile_n == TILE_N, \
            f"tile_m 64, tile_n {TILE_N} (given {cfg.tile_m}, {cfg.tile_n})"

    @property
    def transposed_scores(self) -> bool:
        return False

    @property
    def table_shape(self) -> tuple:
        """No difference table: the mods read their values in registers."""
        return mod_tile.NO_TABLE

    @staticmethod
    def keys_per_cta(config) -> int:
        return config.tile_n

    @property
    def keys_per_consumer(self) -> int:
        return self.config.tile_n // CONSUMERS

    @property
    def queries_per_consumer(self) -> int:
        return self.config.tile_m

    def tiled_mmas(self) -> tuple:
        """(S and dP, dV^T, dK^T, dQ): dV^T and dK^T read dO^T and Q^T (MN-major) against P and dS
        (MN-major: the keys are contiguous), wgmmas of 64 head-dim rows."""
        keys = self.keys_per_consumer

        def mma(a_major, b_major, n):
            return sm90_utils.make_trivial_tiled_mma(self.dtype, self.dtype, a_major, b_major, Float32, (1, 1, 1),
                                                     tiler_mn=(64, n))
        dkv = mma(OperandMajorMode.MN, OperandMajorMode.MN, keys)
        return (mma(OperandMajorMode.K, OperandMajorMode.K, keys), dkv, dkv,
                mma(OperandMajorMode.K, OperandMajorMode.MN, self.head_dim // dq_accum.WARPGROUPS))

    def smem_layouts(self) -> tuple:
        """(sQ, sdO, sK, sV, sPdS): K's columns split in halves for dQ; P and dS (tile_m, tile_n), the keys
        contiguous, each consumer's slice on a swizzle atom."""
        cfg, d = self.config, self.head_dim
        return (operand_layout(self.dtype, cfg.tile_m, d, cfg.num_stages, True),
                operand_layout(self.dtype, cfg.tile_m, self.head_dim_v, self.do_stages, True),
                operand_layout(self.dtype, self.tile_n, d, 1, True, slice_cols=d // dq_accum.WARPGROUPS),
                operand_layout(self.dtype, self.tile_n, self.head_dim_v, 1, True),
                operand_layout(self.dtype, cfg.tile_m, self.tile_n, 2, True, slice_cols=self.keys_per_consumer))

    @cute.jit
    def consume(self, mdK, mdV, scale_log2, tanh_scale, dk_scale, tiled_mma_sdp, tiled_mma_dv, tiled_mma_dk,
                tiled_mma_dq, sQ, sdO, sK, sV, sPdS, sdQ, sLSElog2, sdPsum, pipeline_q, pipeline_do, pipeline_kv,
                n_block, kv_head, batch, steps, window, mods, tail=None):
        cfg, d, dv, keys = self.config, self.head_dim, self.head_dim_v, self.keys_per_consumer
        tidx, _, _ = cute.arch.thread_idx()
        wg = cute.arch.make_warp_uniform(tidx // THREADS_PER_WARPGROUP - 1)  # keeps its smem descriptors uniform
        wg_tidx = tidx % THREADS_PER_WARPGROUP
        key0 = n_block * self.tile_n + wg * keys

        thr_sdp = tiled_mma_sdp.get_slice(wg_tidx)
        thr_dkv = tiled_mma_dk.get_slice(wg_tidx)  # dV^T's tiled MMA is the same
        thr_dq = tiled_mma_dq.get_slice(wg_tidx)
        my_pds = cute.local_tile(sPdS, (cfg.tile_m, keys, 2), (0, wg, 0))  # (tile_m, keys, slot)
        tSrQ = tiled_mma_sdp.make_fragment_A(thr_sdp.partition_A(sQ))
        tSrK = tiled_mma_sdp.make_fragment_B(thr_sdp.partition_B(cute.local_tile(sK, (keys, d, 1), (wg, 0, 0))))
        tdPrdO = tiled_mma_sdp.make_fragment_A(thr_sdp.partition_A(sdO))
        tdPrV = tiled_mma_sdp.make_fragment_B(thr_sdp.partition_B(cute.local_tile(sV, (keys, dv, 1), (wg, 0, 0))))
        tdVrdO = tiled_mma_dv.make_fragment_A(thr_dkv.partition_A(transposed(sdO)))
        tdKrQ = tiled_mma_dk.make_fragment_A(thr_dkv.partition_A(transposed(sQ)))
        tdKVrPdS = tiled_mma_dk.make_fragment_B(thr_dkv.partition_B(transposed(my_pds)))
        tdQrdS = tiled_mma_dq.make_fragment_A(thr_dq.partition_A(sPdS[None, None, DS_SLOT]))
        half = d // dq_accum.WARPGROUPS
        tdQrK = tiled_mma_dq.make_fragment_B(
            thr_dq.partition_B(cute.local_tile(transposed(sK), (half, self.tile_n, 1), (wg, 0, 0))))
        store, thr_store = accumulator_store(self.dtype, tiled_mma_sdp, wg_tidx)
        tPsPdS = thr_store.partition_D(my_pds)

        acc_s = cute.make_rmem_tensor(thr_sdp.partition_shape_C((cfg.tile_m, keys)), Float32)
        acc_dp = cute.make_rmem_tensor_like(acc_s)
        acc_dk = cute.make_rmem_tensor(thr_dkv.partition_shape_C((d, keys)), Float32)
        acc_dv = cute.make_rmem_tensor(thr_dkv.partition_shape_C((dv, keys)), Float32)
        acc_dq = cute.make_rmem_tensor(thr_dq.partition_shape_C((cfg.tile_m, half)), Float32)
        acc_dk.fill(0.0)
        acc_dv.fill(0.0)
        tiled_mma_dk.set(warpgroup.Field.ACCUMULATE, True)
        tiled_mma_dv.set(warpgroup.Field.ACCUMULATE, True)
        coords = rowcol(thr_sdp.partition_C(cute.make_identity_tensor((cfg.tile_m, keys))))
        s, dp = rowcol(acc_s), rowcol(acc_dp)
        p, ds, deriv, scores = self.score_registers(acc_s)
        rows = cute.size(s, mode=[0])
        lse_log2 = cute.make_rmem_tensor((rows,), Float32)
        dpsum = cute.make_rmem_tensor((rows,), Float32)
        both = CONSUMERS * THREADS_PER_WARPGROUP

        pipeline_kv.consumer_wait(pipeline.make_pipeline_state(pipeline.PipelineUserType.Consumer, 1))
        q_state = pipeline.make_pipeline_state(pipeline.PipelineUserType.Consumer, cfg.num_stages)
        do_state = pipeline.make_pipeline_state(pipeline.PipelineUserType.Consumer, self.do_stages)
        for step in cutlass.range(steps.count, unroll=1):
            head, m_block, partial = steps.at(step)
            query0 = m_block * cfg.tile_m
            pipeline_q.consumer_wait(q_state)
            gemm(tiled_mma_sdp, acc_s, tSrQ[None, None, None, q_state.index], tSrK[None, None, None, 0], True)
            pipeline_do.consumer_wait(do_state)
            gemm(tiled_mma_sdp, acc_dp, tdPrdO[None, None, None, do_state.index], tdPrV[None, None, None, 0], True)
            for r in cutlass.range_constexpr(rows):
                lse_log2[r] = sLSElog2[coords[r, 0][0], q_state.index]
                dpsum[r] = sdPsum[coords[r, 0][0], do_state.index]
            warpgroup.wait_group(1)  # S
            self.probabilities(s, deriv, scores, coords, lse_log2, scale_log2, tanh_scale, head, key0, query0, window,
                               mods, partial)
            p.store(acc_s.load().to(self.dtype))
            cute.copy(store, thr_store.retile(p), tPsPdS[None, None, None, P_SLOT])
            # The wgmmas read P and dS through the async proxy: order the ordinary stores before them.
            cute.arch.fence_proxy("async.shared", space="cta")
            gemm(tiled_mma_dv, acc_dv, tdVrdO[None, None, None, do_state.index], tdKVrPdS[None, None, None, P_SLOT],
                 False)
            warpgroup.wait_group(1)  # dP
            self.score_grads(dp, s, deriv, scores, dpsum, coords, head, key0, query0, mods)
            ds.store(acc_dp.load().to(self.dtype))
            if step > 0:  # the other consumer's last dQ GEMM has read this consumer's dS
                cute.arch.barrier(barrier_id=DS_FREE_BARRIER + 1 - wg, number_of_threads=both)
            cute.copy(store, thr_store.retile(ds), tPsPdS[None, None, None, DS_SLOT])
            cute.arch.fence_proxy("async.shared", space="cta")
            cute.arch.barrier(barrier_id=DS_BARRIER, number_of_threads=both)
            gemm(tiled_mma_dq, acc_dq, tdQrdS, tdQrK[None, None, None, 0], True)
            gemm(tiled_mma_dk, acc_dk, tdKrQ[None, None, None, q_state.index], tdKVrPdS[None, None, None, DS_SLOT],
                 False)
            warpgroup.wait_group(1)  # dV^T and dQ
            if step + 1 < steps.count:
                cute.arch.barrier_arrive(barrier_id=DS_FREE_BARRIER + wg, number_of_threads=both)
            pipeline_do.consumer_release(do_state)  # the dV^T GEMM was dO's last reader
            do_state.advance()
            self.hand_over_dq(acc_dq, sdQ, wg, wg_tidx, step)
            warpgroup.wait_group(0)  # dK^T
            pipeline_q.consumer_release(q_state)
            q_state.advance()

        if cutlass.const_expr(tail is not None):
            if tail.is_part:  # a split tail's part: its sums in fp32, dK^T and dV^T into rows of keys
                acc_dk.store(acc_dk.load() * dk_scale)
                for acc, mX, cols in ((acc_dk, tail.mdK, d), (acc_dv, tail.mdV, dv)):
                    mine = cute.local_tile(transposed(mX), (cols, keys), (0, tail.row0 // keys + wg))
                    cute.autovec_copy(acc, thr_dkv.partition_C(mine))
            else:
                self.write_dkv(tiled_mma_dk, acc_dk, acc_dv, dk_scale, sK, sV, mdK, mdV, kv_head, batch, key0,
                               window.seqlen_k, wg, wg_tidx, transposed_acc=True)
        else:
            self.write_dkv(tiled_mma_dk, acc_dk, acc_dv, dk_scale, sK, sV, mdK, mdV, kv_head, batch, key0,
                           window.seqlen_k, wg, wg_tidx, transposed_acc=True)
