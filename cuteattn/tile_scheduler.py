"""Which work tile (m_block, head, batch) each CTA computes, and in what order.

A kernel walks its tiles in one loop:

    tile = scheduler.initial_tile()
    while tile.is_valid:
        ...  # tile.m_block, tile.head, tile.batch
        tile = scheduler.next_tile(tile)

A CTA starts at tile blockIdx.x and strides by gridDim.x, so any grid is correct: one CTA per tile (each
loop runs once) or a persistent grid of one CTA per SM (`grid(num_sms)`), whose CTAs keep their pipelines
and shared memory from tile to tile.

Tiles are numbered so that the CTAs running at once share K and V in L2: the (head, batch) pairs are cut
into sections of `section` pairs; a section's tiles come before the next section's, m_block-major, the
pair fastest. With `section` 1 the m_blocks of one head are neighbours. With `longest_first` (causal, a
right window: bottom-right aligned, later query blocks see more keys) the m_blocks count down, and a
section holds as many heads as fit in L2 together (`l2_section`), so each wave starts with the longest
tiles of several heads.

To come: varlen (cu_seqlens) gives each batch its own num_m_blocks; `tile` would then find the batch from
a prefix sum of those counts (sections within one batch) instead of a product. Split-KV adds a split index
as the fastest mode of the numbering, and WorkTile a field naming the split's n_block range.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Optional

import cutlass
import cutlass.cute as cute
from cutlass import Boolean, Int32

L2_BYTES = 32 << 20  # what one section's K and V may take of Hopper's 50 MB L2


class WorkTile(NamedTuple):
    index: Int32  # in the scheduler's numbering
    m_block: Int32
    head: Int32
    batch: Int32
    is_valid: Boolean


def l2_section(seqlen_k: Int32, key_bytes: float, pairs: Int32) -> Int32:
    """How many scheduled heads' K and V fit in L2 together, at most `pairs`; `key_bytes`: the K and V
    bytes one key row costs a scheduled head (divided among query heads that share a KV head)."""
    return cutlass.min(cutlass.max(Int32(int(L2_BYTES / key_bytes)) // cutlass.max(seqlen_k, 1), 1), pairs)


@dataclass(frozen=True)
class TileScheduler:
    num_m_blocks: Int32
    heads: Int32  # the heads a tile covers one of (KV heads when GQA is packed into the rows)
    batch: Int32
    section: Int32  # (head, batch) pairs per section
    longest_first: bool = False

    @property
    def num_tiles(self) -> Int32:
        return self.num_m_blocks * self.heads * self.batch

    def grid(self, num_sms: Optional[Int32] = None) -> list:
        """One CTA per tile, or with `num_sms` a persistent grid: one CTA per SM, fewer if fewer tiles."""
        tiles = self.num_tiles
        return [tiles if num_sms is None else cutlass.min(tiles, num_sms), 1, 1]

    @cute.jit
    def initial_tile(self) -> WorkTile:
        block, _, _ = cute.arch.block_idx()
        return self.tile(block)

    @cute.jit
    def next_tile(self, tile: WorkTile) -> WorkTile:
        grid, _, _ = cute.arch.grid_dim()
        return self.tile(tile.index + grid)

    def tile(self, index: Int32) -> WorkTile:
        """Tile `index`: section-major, then m_block, then the (head, batch) pair within the section (plain
        arithmetic: it runs on Python ints too)."""
        pairs = self.heads * self.batch
        section_tiles = self.section * self.num_m_blocks
        section = index // section_tiles
        first_pair = section * self.section
        width = cutlass.max(cutlass.min(self.section, pairs - first_pair), 1)  # the last section may be narrower
        within = index - section * section_tiles
        m_block = within // width
        pair = first_pair + within % width
        if self.longest_first:
            m_block = self.num_m_blocks - 1 - m_block
        return WorkTile(index, m_block, pair % self.heads, pair // self.heads, index < self.num_tiles)
