"""Which work tile each CTA takes, shared by the kernels.

The tiles of a launch, (m_block, head, batch), are numbered 0 .. count - 1; a CTA takes tiles block_idx.x,
block_idx.x + grid, ... until they run out. With a grid of one CTA per tile each takes one; a persistent grid
(at most one CTA per SM) walks many, so that a CTA's epilogue overlaps the loads of its next tile.

Where the work per tile is known only at run time (a mask_mod's block counts), `by_work` orders the tiles on
the GPU, longest first, and the kernel reads its tile from that order: the short tiles fill the end of the launch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

import cutlass
import cutlass.cute as cute
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
    by_work: Optional[cute.Tensor] = None  # tile t is by_work[t] of the plain order (`by_work`)

    def count(self):
        return self.m_blocks * self.heads * self.batch

    def at(self, t):
        if self.by_work is not None:
            return unflatten(self.by_work[t], (self.m_blocks, self.heads))
        if self.longest_first:
            group_tiles = self.group * self.m_blocks
            first = t // group_tiles * self.group
            size = cutlass.min(self.group, self.heads * self.batch - first)
            within = t % group_tiles
            head_batch = first + within % size
            m_block = self.m_blocks - 1 - within // size
            return m_block, head_batch % self.heads, head_batch // self.heads
        return unflatten(t, (self.m_blocks, self.heads))


def unflatten(t, extents: tuple):
    """(x, y, z) of index t = x + extents[0] * (y + extents[1] * z)."""
    return t % extents[0], t // extents[0] % extents[1], t // extents[0] // extents[1]


def l2_group(seqlen_k, key_bytes: int, qhead_per_kvhead: int, l2_share_mb: int):
    """The (head, batch) pairs whose K and V, `key_bytes` per key, fit in `l2_share_mb` of L2 (at least one);
    the query heads that share a KV head count once."""
    keys = (l2_share_mb << 20) // key_bytes * qhead_per_kvhead
    return cutlass.max(keys // cutlass.max(seqlen_k, 1), 1)


def grid_size(count, max_ctas, persistent: bool):
    """The CTAs to launch for `count` tiles: one per tile, or, persistent, at most `max_ctas`."""
    return cutlass.min(count, max_ctas) if persistent else count


def by_work(work: torch.Tensor, group: int) -> torch.Tensor:
    """The tiles in launch order, as their indices in the plain order (the last mode of `work` fastest, then
    head, then batch): groups of `group` (head, batch) pairs one after another, as in `TileOrder`, each from its
    most work to its least. work: (batch, heads, blocks), the steps of each tile."""
    work = work.reshape(-1, work.shape[-1]).to(torch.int64)
    pair_group = torch.arange(work.shape[0], device=work.device) // group
    key = (pair_group[:, None] << 32) - work  # needs no bound on the work: reading one back would wait for the GPU
    return key.flatten().argsort(stable=True).to(torch.int32)


@cute.jit
def cta_tile(by_work: Optional[cute.Tensor], shape: tuple):
    """(x, y, z) of this CTA's tile in a grid of `shape`: its block index, or, with an order from `by_work`
    (the kernel launched as a 1-D grid), that order's tile at its place."""
    if cutlass.const_expr(by_work is None):
        return cute.arch.block_idx()
    return unflatten(by_work[cute.arch.block_idx()[0]], shape)
