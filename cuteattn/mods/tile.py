"""Mods applied to a score tile held in registers, for every kernel that holds one.

A tile is indexed (row, col) through `coords`, each register's position in the tile; row0 and col0 place
the tile in the sequences. The forward holds queries on rows (`transposed=False`), the backward keys on
rows. Indices past the sequence ends are clamped to the last position before the mod sees them, so a mod
that indexes a captured tensor by q_idx or kv_idx never reads past it; those scores are masked anyway.
"""

from __future__ import annotations

from dataclasses import dataclass

import cutlass
import cutlass.cute as cute
from cutlass import Float32, Int32

from cuteattn.mods import lower


@dataclass(frozen=True)
class TilePlace:
    """Where a score tile sits: batch, query head, and the first query and key it holds."""

    batch: Int32
    head: Int32
    query0: Int32
    key0: Int32
    seqlen_q: Int32
    seqlen_k: Int32
    transposed: bool = False  # keys on rows, queries on columns


def _indices(place: TilePlace, coords, r, c):
    row, col = coords[r, 0][0], coords[0, c][1]
    query, key = (col, row) if cutlass.const_expr(place.transposed) else (row, col)
    return (cutlass.min(place.query0 + query, place.seqlen_q - 1),
            cutlass.min(place.key0 + key, place.seqlen_k - 1))


@cute.jit
def apply_score_mod(traced: cutlass.Constexpr, tensors, s: cute.Tensor, coords: cute.Tensor, place: TilePlace,
                    score_scale: Float32):
    """s = score_mod(s * score_scale, ...) in place: the mod sees scores in the units of q.k * softmax_scale."""
    for r in cutlass.range_constexpr(cute.size(s, mode=[0])):
        for c in cutlass.range_constexpr(cute.size(s, mode=[1])):
            q_idx, kv_idx = _indices(place, coords, r, c)
            s[r, c] = lower.apply_score_mod(traced, tensors, s[r, c] * score_scale, place.batch, place.head, q_idx,
                                            kv_idx)


@cute.jit
def score_mod_with_derivative(traced: cutlass.Constexpr, tensors, s: cute.Tensor, deriv: cute.Tensor,
                              coords: cute.Tensor, place: TilePlace, score_scale: Float32):
    """`apply_score_mod`, and d new_score / d score into `deriv` (a register tensor of s's shape)."""
    for r in cutlass.range_constexpr(cute.size(s, mode=[0])):
        for c in cutlass.range_constexpr(cute.size(s, mode=[1])):
            q_idx, kv_idx = _indices(place, coords, r, c)
            score = s[r, c] * score_scale
            deriv[r, c] = lower.score_mod_derivative(traced, tensors, score, place.batch, place.head, q_idx,
                                                     kv_idx).to(deriv.element_type)
            s[r, c] = lower.apply_score_mod(traced, tensors, score, place.batch, place.head, q_idx, kv_idx)


@cute.jit
def apply_mask_mod(traced: cutlass.Constexpr, tensors, s: cute.Tensor, coords: cute.Tensor, place: TilePlace):
    """Scores whose key mask_mod hides become -inf."""
    for r in cutlass.range_constexpr(cute.size(s, mode=[0])):
        for c in cutlass.range_constexpr(cute.size(s, mode=[1])):
            q_idx, kv_idx = _indices(place, coords, r, c)
            visible = lower.apply_mask_mod(traced, tensors, place.batch, place.head, q_idx, kv_idx)
            s[r, c] = Float32(cutlass.select_(visible, s[r, c], -Float32.inf))
