"""Which keys a query row sees, per block and per score: keys past seqlen_k, the sliding window (causal is
right = 0), aligned to the bottom right."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import cutlass
import cutlass.cute as cute
from cutlass import Float32, Int32


WINDOW_MAX = 1 << 30  # a wider window cuts no key; the bound keeps the kernels' index arithmetic in Int32


def window_args(opts) -> tuple:
    """A call's (window_left, window_right) as the kernels take them: 0 for an unbounded side (the kernel's
    flags say which sides are bounded), at most WINDOW_MAX."""
    return tuple(0 if w is None else min(w, WINDOW_MAX) for w in (opts.window_left, opts.window_right))


@dataclass(frozen=True)
class Window:
    """Query i sees keys j < seqlen_k with i + diagonal - left <= j <= i + diagonal + right, where
    diagonal = seqlen_k - seqlen_q; a side that is None is unbounded. Row r of a tile is query r // pack: a
    forward that packs the `pack` query heads of a KV head into its rows (`pack_gqa`) has pack of them a query;
    the methods below take rows."""

    seqlen_k: Int32
    diagonal: Int32
    left: Optional[Int32] = None
    right: Optional[Int32] = None
    pack: int = 1

    @staticmethod
    def of(rows, seqlen_k, window_left, window_right, has_left: bool, has_right: bool, pack: int = 1) -> "Window":
        """The window of a kernel whose compile-time flags say which sides the run-time sizes bound, over
        `rows` = seqlen_q * pack query rows."""
        assert pack & (pack - 1) == 0, "packed rows hold a power of two heads a query"
        return Window(seqlen_k, seqlen_k - rows // pack if pack > 1 else seqlen_k - rows,
                      window_left if has_left else None, window_right if has_right else None, pack)

    @property
    def seqlen_q(self):
        return self.seqlen_k - self.diagonal

    def query(self, row):
        # pack divides a TMA box's 64 rows: a shift (rows are not negative), without signed division's fixup
        return row >> (self.pack.bit_length() - 1) if self.pack > 1 else row

    def first_key(self, row):
        """The first key `row` sees (may be negative); only with a left bound."""
        return self.query(row) + self.diagonal - self.left

    def end_key(self, row):
        """One past the last key `row` sees (at most seqlen_k, may be negative)."""
        if self.right is None:
            return self.seqlen_k
        return cutlass.min(self.seqlen_k, self.query(row) + self.diagonal + self.right + 1)

    def block_range(self, first_row, last_row, tile_n: int):
        """[n_block_min, n_block_max): the blocks of `tile_n` keys that rows first_row..last_row see."""
        if self.right is None:
            n_block_max = cute.ceil_div(self.seqlen_k, tile_n)
        else:
            n_block_max = cute.ceil_div(cutlass.max(self.end_key(last_row), 0), tile_n)
        if self.left is None:
            return 0, n_block_max
        n_block_min = cutlass.max(self.first_key(first_row), 0) // tile_n
        return n_block_min, cutlass.max(n_block_min, n_block_max)

    def query_block_range(self, first_key, last_key, seqlen_q, tile_m: int):
        """[m_block_min, m_block_max): the blocks of `tile_m` query rows that see some key of
        first_key..last_key (the backward's view of `block_range`)."""
        m_block_max = cute.ceil_div(seqlen_q, tile_m)
        if self.left is not None:  # the last row that sees last_key
            m_block_max = cutlass.min(m_block_max, cute.ceil_div(
                cutlass.max(last_key - self.diagonal + self.left + 1, 0), tile_m))
        if self.right is None:
            return 0, m_block_max
        m_block_min = cutlass.max(first_key - self.diagonal - self.right, 0) // tile_m
        return m_block_min, cutlass.max(m_block_min, m_block_max)

    def unmasked_blocks(self, first_row, tile_n: int):
        """How many blocks of `tile_n` keys from key 0 up rows first_row... see whole (no left bound)."""
        return cutlass.max(self.end_key(first_row), 0) // tile_n

    def left_cut_blocks(self, last_row, tile_n: int):
        """How many blocks of `tile_n` keys from key 0 up the window's left edge cuts for some row up to
        last_row (with a left bound)."""
        return cute.ceil_div(cutlass.max(self.first_key(last_row), 0), tile_n)

    def masked_steps(self, first_row, rows: int, n_block_max, n_blocks, tile_n: int):
        """(n_masked, unmasked_end) for rows first_row.. first_row + rows - 1 visiting n_blocks blocks of
        `tile_n` keys from block n_block_max - 1 down: only steps before n_masked (the seqlen_k tail, the right
        edge) and from unmasked_end on (the left edge) can cut a row's keys; step 0 counts as masked."""
        n_masked = cutlass.max(cutlass.min(n_block_max - self.unmasked_blocks(first_row, tile_n), n_blocks), 1)
        if self.left is None:
            return n_masked, n_blocks
        left_cut = self.left_cut_blocks(first_row + rows - 1, tile_n)
        return n_masked, cutlass.max(cutlass.min(n_block_max - left_cut, n_blocks), n_masked)

    def needs_mask(self, first_row, last_row, col0, tile_n: int):
        """Whether some row of first_row..last_row does not see some key of the block col0..col0 + tile_n."""
        cut = col0 + tile_n > self.end_key(first_row)
        if self.left is not None:
            cut = cut | (col0 < self.first_key(last_row))
        return cut


@cute.jit
def mask_tile(s: cute.Tensor, coords: cute.Tensor, row0: Int32, col0: Int32, window: Window, keys: cutlass.Constexpr,
              padding_rows: cutlass.Constexpr = 0):
    """Set to -inf the scores (rows, cols) whose key the row does not see. `coords` holds each register's
    (row, col) in the tile of `keys` keys; row0 and col0 place the tile in the sequence. The seqlen_k tail is
    masked only in the tile that crosses it; with padding_rows, the tile's row count, also the rows past
    seqlen_q (unpacked rows only)."""
    if cutlass.const_expr(window.pack > 1):
        _mask_packed_rows(s, coords, row0, col0, window)
    else:
        base_row, base_col = coords[0, 0]
        _mask_edges(s, coords, col0 + base_col - row0 - base_row, window, transposed=False)
    if cute.arch.make_warp_uniform(col0 + keys > window.seqlen_k) != 0:
        for c in cutlass.range_constexpr(cute.size(s, mode=[1])):
            if coords[0, c][1] + col0 >= window.seqlen_k:
                for r in cutlass.range_constexpr(cute.size(s, mode=[0])):
                    s[r, c] = -Float32.inf
    if cutlass.const_expr(padding_rows > 0):
        if cute.arch.make_warp_uniform(row0 + padding_rows > window.seqlen_q) != 0:
            for r in cutlass.range_constexpr(cute.size(s, mode=[0])):
                past = coords[r, 0][0] + row0 >= window.seqlen_q
                for c in cutlass.range_constexpr(cute.size(s, mode=[1])):
                    s[r, c] = cutlass.select_(past, -Float32.inf, s[r, c])


@cute.jit
def _mask_edges(s: cute.Tensor, coords: cute.Tensor, key_minus_query: Int32, window: Window,
                transposed: cutlass.Constexpr):
    """The window's edges: key - query of register (r, c) is register (0, 0)'s, `key_minus_query`, plus a
    compile-time constant, so a tile takes one threshold an edge and one compare per distinct constant.
    `transposed`: keys on the rows, queries on the columns."""
    for r in cutlass.range_constexpr(cute.size(s, mode=[0])):
        for c in cutlass.range_constexpr(cute.size(s, mode=[1])):
            row, col = cute.crd2idx((r, c), coords.layout)
            offset = row - col if cutlass.const_expr(transposed) else col - row
            if cutlass.const_expr(window.right is not None):
                if offset > window.diagonal + window.right - key_minus_query:
                    s[r, c] = -Float32.inf
            if cutlass.const_expr(window.left is not None):
                if offset < window.diagonal - window.left - key_minus_query:
                    s[r, c] = -Float32.inf


@cute.jit
def _mask_packed_rows(s: cute.Tensor, coords: cute.Tensor, row0: Int32, col0: Int32, window: Window):
    """`mask_tile`'s window edges where rows are packed query heads: key - query differs from row to row by more
    than a constant, so each row computes its edges (a thread holds few rows)."""
    for r in cutlass.range_constexpr(cute.size(s, mode=[0])):
        query = window.query(row0 + coords[r, 0][0])
        for c in cutlass.range_constexpr(cute.size(s, mode=[1])):
            key = col0 + coords[r, c][1]
            if cutlass.const_expr(window.right is not None):
                if key > query + window.diagonal + window.right:
                    s[r, c] = -Float32.inf
            if cutlass.const_expr(window.left is not None):
                if key < query + window.diagonal - window.left:
                    s[r, c] = -Float32.inf


@cute.jit
def mask_tile_transposed(s: cute.Tensor, coords: cute.Tensor, key0: Int32, query0: Int32, window: Window,
                         keys: cutlass.Constexpr, queries: cutlass.Constexpr,
                         padding_queries: cutlass.Constexpr = False):
    """`mask_tile` for a transposed score tile of `keys` x `queries`: keys on the rows, queries on the columns;
    with `padding_queries`, also the columns of queries past seqlen_q."""
    base_key, base_query = coords[0, 0]
    _mask_edges(s, coords, key0 + base_key - query0 - base_query, window, transposed=True)
    # One predicate a row (a column) and a select a score: an `if` over a row's scores becomes a branch.
    if cute.arch.make_warp_uniform(key0 + keys > window.seqlen_k) != 0:
        for r in cutlass.range_constexpr(cute.size(s, mode=[0])):
            past = coords[r, 0][0] + key0 >= window.seqlen_k
            for c in cutlass.range_constexpr(cute.size(s, mode=[1])):
                s[r, c] = cutlass.select_(past, -Float32.inf, s[r, c])
    if cutlass.const_expr(padding_queries):
        if cute.arch.make_warp_uniform(query0 + queries > window.seqlen_q) != 0:
            for c in cutlass.range_constexpr(cute.size(s, mode=[1])):
                past = coords[0, c][1] + query0 >= window.seqlen_q
                for r in cutlass.range_constexpr(cute.size(s, mode=[0])):
                    s[r, c] = cutlass.select_(past, -Float32.inf, s[r, c])
