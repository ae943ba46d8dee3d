"""Which work tile each CTA takes, shared by the kernels.

The tiles of a launch, (m_block, head, batch), are numbered 0 .. count - 1; a CTA takes tiles block_idx.x,
block_idx.x + grid, ... until they run out. With a grid of one CTA per tile each takes one; a persistent grid
(at most one CTA per SM) walks many, so that a CTA's epilogue overlaps the loads of its next tile.
"""

from __future__ import annotations

from dataclasses import dataclass

import cutlass
from cutlass import Int32


@dataclass(frozen=True)
class TileOrder:
    """Tile t -> (m_block, head, batch).

    Plain: the m_blocks of one (head, batch) are neighbours, so the CTAs running side by side share that
    head's K and V in L2. longest_first (where later rows see more keys: causal, a window's right edge): by
    m_block from the last, every (head, batch) of one m_block before the next, so the longest tiles start
    first and the short ones fill the end.
    """

    m_blocks: Int32
    heads: Int32
    batch: Int32
    longest_first: bool = False

    def count(self):
        return self.m_blocks * self.heads * self.batch

    def at(self, t):
        if self.longest_first:
            head_batch = t % (self.heads * self.batch)
            m_block = self.m_blocks - 1 - t // (self.heads * self.batch)
        else:
            head_batch = t // self.m_blocks
            m_block = t % self.m_blocks
        return m_block, head_batch % self.heads, head_batch // self.heads


def grid_size(count, max_ctas, persistent: bool):
    """The CTAs to launch for `count` tiles: one per tile, or, persistent, at most `max_ctas`."""
    return cutlass.min(count, max_ctas) if persistent else count
