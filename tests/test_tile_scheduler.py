"""The tile order, on the host (its arithmetic is the kernel's, on Python integers)."""

import pytest
import torch

from cuteattn.tile_scheduler import TileOrder, by_work, l2_group


@pytest.mark.parametrize("longest_first", [False, True])
@pytest.mark.parametrize("m_blocks,heads,batch,group", [(1, 1, 1, 1), (3, 2, 3, 4), (8, 16, 2, 5), (5, 3, 1, 64)])
def test_every_tile_once(m_blocks, heads, batch, group, longest_first):
    order = TileOrder(m_blocks, heads, batch, longest_first, group)
    tiles = [order.at(t) for t in range(order.count())]
    expected = {(m, h, b) for m in range(m_blocks) for h in range(heads) for b in range(batch)}
    assert len(tiles) == len(expected) and set(tiles) == expected


def test_longest_first_within_groups():
    """Under longest_first each group of (head, batch) pairs runs its m_blocks from the last down, and a
    group's tiles all come before the next group's."""
    m_blocks, heads, batch, group = 4, 3, 2, 4
    order = TileOrder(m_blocks, heads, batch, True, group)
    tiles = [order.at(t) for t in range(order.count())]
    pair = [b * heads + h for _, h, b in tiles]
    groups = [p // group for p in pair]
    assert groups == sorted(groups)
    for g in set(groups):
        m_of_group = [m for (m, _, _), gg in zip(tiles, groups) if gg == g]
        assert m_of_group == sorted(m_of_group, reverse=True)


def test_plain_order_keeps_a_heads_blocks_together():
    order = TileOrder(3, 2, 2)
    assert [order.at(t) for t in range(6)] == [(0, 0, 0), (1, 0, 0), (2, 0, 0), (0, 1, 0), (1, 1, 0), (2, 1, 0)]


def test_l2_group():
    mb = 1 << 20
    assert l2_group(1024, 512, 1, 16) == 16 * mb // (1024 * 512)
    assert l2_group(1 << 20, 512, 1, 16) == 1  # one head's K and V exceed the share: groups of one
    assert l2_group(16384, 256, 4, 16) == 4 * l2_group(16384, 256, 1, 16)  # 4 query heads read one KV head


def test_by_work():
    """A mask_mod's order: each tile once, groups of (head, batch) pairs in turn, each group's tiles from the most
    work to the least (ties in the plain order), and TileOrder walks it."""
    batch, heads, m_blocks, group = 2, 3, 5, 4
    work = torch.randint(0, 9, (batch, heads, m_blocks))
    order = by_work(work, group)
    assert sorted(order.tolist()) == list(range(batch * heads * m_blocks))
    flat = work.flatten()
    keys = [(t // m_blocks // group, -flat[t].item(), t) for t in order.tolist()]
    assert keys == sorted(keys)
    tiles = TileOrder(m_blocks, heads, batch, by_work=order.tolist())
    assert [tiles.at(t) for t in range(tiles.count())] == \
        [(t % m_blocks, t // m_blocks % heads, t // m_blocks // heads) for t in order.tolist()]
