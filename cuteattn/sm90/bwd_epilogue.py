"""dK and dV of a backward CTA's keys, written once at the end of its steps."""

from __future__ import annotations

import cutlass
import cutlass.cute as cute

from cuteattn.sm90.bwd_config import CONSUMERS, DKV_BARRIER, DS_BARRIER, KEYS_PER_WARPGROUP, THREADS_PER_WARPGROUP
from cuteattn.sm90.smem import accumulator_store, transposed


class DkvEpilogue:
    """Mixed into the backward kernels; reads their dtype, config, head_dim and `keys_per_consumer`."""

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
