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
    head's K and V in L2. longest_first (where later rows see more keys: causal, a window's right edge): the
    (head, batch) pairs go in groups whose K and V fit `group` in L2; within a group, by m_block from the last,
    every pair of the group at one m_block before the next, so the longest tiles start first and the short
    ones fill the end, while the CTAs in flight still read the same few heads' K and V.
    """

    m_blocks: Int32
    heads: Int32
    batch: Int32
    longest_first: bool = False
    group: Int32 = 1  # (head, batch) pairs per group under longest_first

    def count(self):
        return self.m_blocks * self.heads * self.batch

    def at(self, t):
        if self.longest_first:
            group_tiles = self.group * self.m_blocks
            first = t // group_tiles * self.group
            size = cutlass.min(self.group, self.heads * self.batch - first)
            within = t % group_tiles
            head_batch = first + within % size
            m_block = self.m_blocks - 1 - within // size
        else:
            head_batch = t // self.m_blocks
            m_block = t % self.m_blocks
        return m_block, head_batch % self.heads, head_batch // self.heads


def l2_group(seqlen_k, key_bytes: int, qhead_per_kvhead: int, l2_share_mb: int):
    """The (head, batch) pairs whose K and V, `key_bytes` per key, fit in `l2_share_mb` of L2 (at least one);
    the query heads that share a KV head count once."""
    keys = (l2_share_mb << 20) // key_bytes * qhead_per_kvhead
    return cutlass.max(keys // cutlass.max(seqlen_k, 1), 1)


def grid_size(count, max_ctas, persistent: bool):
    """The CTAs to launch for `count` tiles: one per tile, or, persistent, at most `max_ctas`."""
    return cutlass.min(count, max_ctas) if persistent else count
