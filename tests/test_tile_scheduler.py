"""The tile numbering of `cuteattn.tile_scheduler`, on the host (its arithmetic runs on Python ints)."""

import itertools

import pytest

from cuteattn.tile_scheduler import TileScheduler


@pytest.mark.parametrize("num_m_blocks,heads,batch,section", [(1, 1, 1, 1), (3, 5, 2, 4), (7, 4, 3, 12),
                                                                (2, 3, 1, 64), (33, 16, 3, 2)])
@pytest.mark.parametrize("longest_first", [False, True])
def test_every_tile_once(num_m_blocks, heads, batch, section, longest_first):
    scheduler = TileScheduler(num_m_blocks, heads, batch, section, longest_first)
    tiles = [scheduler.tile(i) for i in range(scheduler.num_tiles + 3)]
    assert all(t.is_valid for t in tiles[:scheduler.num_tiles]) and not any(t.is_valid for t in tiles[-3:])
    coords = {(t.m_block, t.head, t.batch) for t in tiles[:scheduler.num_tiles]}
    assert coords == set(itertools.product(range(num_m_blocks), range(heads), range(batch)))


def test_longest_first_within_a_section():
    scheduler = TileScheduler(4, 6, 1, 3, longest_first=True)
    m_blocks = [scheduler.tile(i).m_block for i in range(scheduler.num_tiles)]
    assert m_blocks == [3] * 3 + [2] * 3 + [1] * 3 + [0] * 3 + [3] * 3 + [2] * 3 + [1] * 3 + [0] * 3


@pytest.mark.parametrize("num_sms", [1, 7, 132])
def test_strided_walk_covers_the_tiles(num_sms):
    """A persistent CTA starts at its block index and strides by the grid: together they visit each tile once."""
    scheduler = TileScheduler(5, 3, 2, 2, longest_first=True)
    grid = scheduler.grid(num_sms)[0]
    visited = [i for cta in range(grid) for i in range(cta, scheduler.num_tiles, grid)]
    assert sorted(visited) == list(range(scheduler.num_tiles))


def test_pack_gqa_choice():
    from cuteattn.sm90.forward import packs_gqa

    assert packs_gqa(1, 8, 128) and packs_gqa(17, 4, 128)  # decode: one tile instead of one per head
    assert not packs_gqa(1000, 4, 128) and not packs_gqa(113, 4, 128)  # no fewer tiles
    assert not packs_gqa(1, 3, 128, requested=True)  # TMA moves whole groups of heads
    assert not packs_gqa(1, 8, 128, requested=False) and packs_gqa(1000, 4, 128, requested=True)
    assert not packs_gqa(1, 1, 128)
