"""The work of one backward CTA: the (query head, m_block) steps of its key block, and where a split tail's part
puts dK and dV."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import cutlass
import cutlass.cute as cute
from cutlass import Int32


@dataclass(frozen=True)
class Steps:
    """The (query head, m_block) pairs a CTA visits, in order: each head of the KV head's group over the
    query blocks [m_block_min, m_block_min + num_m_blocks), or, with a mask_mod, its block list: entries
    2 * (g * m_blocks + m_block) + cut, and with deterministic each entry's dQ turn."""

    first_head: Int32
    m_block_min: Int32
    num_m_blocks: Int32
    count: Int32
    blocks: Optional[cute.Tensor] = None
    turns: Optional[cute.Tensor] = None
    m_blocks: Optional[Int32] = None
    first: Optional[Int32] = None  # a split tail's part: its steps start here
    group: int = 1  # query heads a KV head: with one, a step is its query block, with no division

    def at(self, step):
        """(head, m_block, partial) of a step; partial: the mask_mod cuts it, it must mask it (False without a
        list); the window's edges and the seqlen_k tail are masked wherever they cut, list or none."""
        if self.first is not None:
            step = self.first + step
        if self.blocks is None:
            g, m = self.head_and_block(step, self.num_m_blocks)
            return self.first_head + g, self.m_block_min + m, False
        entry = self.blocks[step]
        g, m = self.head_and_block(entry >> 1, self.m_blocks)
        return self.first_head + g, m, (entry & 1) != 0

    def head_and_block(self, index, m_blocks):
        """(g, m) of index g * m_blocks + m; with one query head a KV head, (0, index), no division."""
        if self.group == 1:
            return 0, index
        return index // m_blocks, index % m_blocks


@dataclass(frozen=True)
class TailPart:
    """Where a CTA of a split tail puts its key block's dK and dV: in the input dtype as usual (a whole block),
    or, a part, its sums over its steps in fp32 into rows row0 onwards of mdK and mdV (rows, head_dim)."""

    is_part: cutlass.Boolean
    mdK: cute.Tensor
    mdV: cute.Tensor
    row0: Int32
