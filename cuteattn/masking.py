"""Masking of a score tile in registers: keys past seqlen_k, causal, sliding window."""

import cutlass
import cutlass.cute as cute
from cutlass import Float32, Int32


@cute.jit
def mask_tile(s: cute.Tensor, coords: cute.Tensor, row0: Int32, col0: Int32, seqlen_q: Int32,
              seqlen_k: Int32, causal: cutlass.Constexpr[bool]):
    """Set to -inf the scores (rows, cols) whose key is past seqlen_k or, if causal, after the query's
    diagonal (aligned to the bottom right). `coords` holds each register's (row, col) in the tile;
    row0 and col0 place the tile in the sequence."""
    for r in cutlass.range_constexpr(cute.size(s, mode=[0])):
        row = coords[r, 0][0] + row0
        limit = seqlen_k
        if cutlass.const_expr(causal):
            limit = cutlass.min(limit, row + 1 + seqlen_k - seqlen_q)
        for c in cutlass.range_constexpr(cute.size(s, mode=[1])):
            if coords[0, c][1] + col0 >= limit:
                s[r, c] = -Float32.inf
