"""P^T and dS^T of a consumer's recomputed scores, in registers: softcap, score_mod and its derivative, the masks,
exp2, and the gradients of the score_mod's captured tensors; shared by the sm90 backward kernels."""

from __future__ import annotations

import cutlass
import cutlass.cute as cute
from cutlass import Float32

from cuteattn import softmax
from cuteattn.fragments import rowcol
from cuteattn.masking import mask_tile, mask_tile_transposed
from cuteattn.mods import tile as mod_tile
from cuteattn.sm90.smem import accumulator_store


class BwdScores:
    """Mixed into the backward kernels; reads their dtype, score_mod, mask_mod and has_softcap, and the score
    tile's orientation and shape (`transposed_scores`, `keys_per_consumer`, `queries_per_consumer`)."""

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
