"""The sm90 backward's steps: the producer warp's loads, and a consumer warpgroup's GEMMs and score math per query
block (`bwd_kernel` describes the algorithm)."""

from __future__ import annotations

import cutlass
import cutlass.cute as cute
import cutlass.pipeline as pipeline
from cutlass import Float32
from cutlass.cute.nvgpu import warpgroup

from cuteattn.fragments import as_a_operand, rowcol
from cuteattn.sm90 import dq_accum, tma
from cuteattn.sm90.bwd_config import CONSUMERS, DS_BARRIER, DS_BUFFERS, KEYS_PER_WARPGROUP, THREADS_PER_WARPGROUP
from cuteattn.sm90.mma import gemm, pinned
from cuteattn.sm90.smem import transposed


@cute.jit
def load_columns(stat: cute.Tensor, smem: cute.Tensor, coords: cute.Tensor, stage):
    """Into `stat`, the thread's value of lse or dpsum per column of S^T (its queries), from `smem`'s `stage`."""
    for c in cutlass.range_constexpr(cute.size(stat)):
        stat[c] = smem[coords[0, c][1], stage]


class BwdMainloop:
    """Mixed into `bwd_kernel.FlashBwdSm90`; reads its fields and properties."""

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
