"""The window's block arithmetic, on the host (the kernels' own arithmetic, on Python integers), against the
visible (query, key) pairs counted one by one."""

import itertools

import pytest

pytest.importorskip("cutlass")

from cuteattn.masking import Window  # noqa: E402
from cuteattn.tile_scheduler import split_blocks  # noqa: E402

ROWS = 64  # a consumer warpgroup's rows
TILE_M = 128  # the forward's two consumers


def visible(window: Window, row: int, key: int) -> bool:
    query = row // window.pack
    if key >= window.seqlen_k:
        return False
    if window.right is not None and key > query + window.diagonal + window.right:
        return False
    return window.left is None or key >= query + window.diagonal - window.left


@pytest.mark.parametrize("tile_n", [64, 128, 176])
@pytest.mark.parametrize("left,right", [(None, None), (None, 0), (100, 0), (3, 200), (0, 0), (64, None),
                                        (1024, 0), (0, None)])
def test_masked_steps(left, right, tile_n):
    """Every step the forward runs mask-free (between n_masked and unmasked_end) sees its block whole, for each
    warpgroup's rows; and each row's visible keys lie in the CTA's blocks."""
    for seqlen_q, seqlen_k in itertools.product((1, 17, 113, 300, 1000), (1, 17, 113, 300, 1000)):
        check_masked_steps(Window(seqlen_k, seqlen_k - seqlen_q, left, right), seqlen_q, tile_n)


@pytest.mark.parametrize("pack", [2, 8])
@pytest.mark.parametrize("left,right", [(None, None), (None, 0), (100, 0), (3, 200), (0, None)])
def test_masked_steps_of_packed_rows(left, right, pack):
    """test_masked_steps where the rows pack `pack` query heads each query (row r is query r // pack)."""
    for seqlen_q, seqlen_k in itertools.product((1, 17, 113), (1, 17, 113, 300)):
        rows = seqlen_q * pack
        window = Window.of(rows, seqlen_k, left or 0, right or 0, left is not None, right is not None, pack)
        assert window.seqlen_q == seqlen_q
        check_masked_steps(window, rows, 128)


@pytest.mark.parametrize("splits", [2, 3, 64])
@pytest.mark.parametrize("left,right", [(None, None), (None, 0), (100, 0), (3, 200)])
def test_masked_steps_of_splits(left, right, splits):
    """test_masked_steps where split-KV gives each CTA a run of a tile's blocks (`split_blocks`); the runs
    cover the tile's blocks once each."""
    for seqlen_q, seqlen_k in itertools.product((1, 17, 300), (17, 300, 1000)):
        window = Window(seqlen_k, seqlen_k - seqlen_q, left, right)
        check_masked_steps(window, seqlen_q, 64, splits)


def check_masked_steps(window: Window, seqlen_q: int, tile_n: int, splits: int = 1):
    """test_masked_steps' checks over `seqlen_q` rows, for each split of a tile's blocks."""
    seqlen_k = window.seqlen_k
    for m_block in range(-(-seqlen_q // TILE_M)):
        first_row = m_block * TILE_M
        n_block_min, n_block_max = window.block_range(first_row, min(first_row + TILE_M, seqlen_q) - 1, tile_n)
        parts = [split_blocks(n_block_min, n_block_max, split, splits) for split in range(splits)]
        assert [n for lo, hi in parts for n in range(lo, hi)] == list(range(n_block_min, n_block_max))
        for row0 in (first_row, first_row + ROWS):
            rows = range(row0, min(row0 + ROWS, seqlen_q))
            seen = {key for row in rows for key in range(seqlen_k) if visible(window, row, key)}
            assert all(n_block_min * tile_n <= key < n_block_max * tile_n for key in seen)
            for lo, hi in parts:
                check_unmasked_steps(window, row0, tile_n, lo, hi)


def check_unmasked_steps(window: Window, row0: int, tile_n: int, n_block_min: int, n_block_max: int):
    """Rows row0.. visiting blocks n_block_max - 1 down to n_block_min: the steps run mask-free see their
    blocks whole."""
    n_blocks = n_block_max - n_block_min
    if n_blocks <= 0:
        return
    n_masked, unmasked_end = window.masked_steps(row0, ROWS, n_block_max, n_blocks, tile_n)
    assert 1 <= n_masked <= unmasked_end <= n_blocks
    for step in range(n_masked, unmasked_end):
        keys = range((n_block_max - 1 - step) * tile_n, (n_block_max - step) * tile_n)
        cut = [(row, key) for row in range(row0, row0 + ROWS) for key in keys if not visible(window, row, key)]
        assert not cut, (window, row0, step, cut[:3])


WINDOWS = [(None, None), (None, 0), (100, 0), (3, 200), (0, 0), (64, None), (0, None)]
SEQLENS = (1, 17, 113, 300)


@pytest.mark.parametrize("left,right", WINDOWS)
def test_query_block_range(left, right):
    """The backward's query blocks for a block of keys hold every row that sees one of its keys."""
    tile_m, tile_n = 64, 128
    for seqlen_q, seqlen_k in itertools.product(SEQLENS, SEQLENS):
        window = Window(seqlen_k, seqlen_k - seqlen_q, left, right)
        for first_key in range(0, seqlen_k, tile_n):
            last_key = min(first_key + tile_n, seqlen_k) - 1
            m_block_min, m_block_max = window.query_block_range(first_key, last_key, seqlen_q, tile_m)
            assert 0 <= m_block_min <= m_block_max <= -(-seqlen_q // tile_m)
            rows = {row for row in range(seqlen_q) for key in range(first_key, last_key + 1)
                    if visible(window, row, key)}
            assert all(m_block_min * tile_m <= row < m_block_max * tile_m for row in rows)


@pytest.mark.parametrize("left,right", WINDOWS)
def test_needs_mask(left, right):
    """A block that needs_mask calls whole is whole: every row of the range sees every key of the block."""
    rows, tile_n = 64, 32
    for seqlen_q, seqlen_k in itertools.product(SEQLENS, SEQLENS):
        window = Window(seqlen_k, seqlen_k - seqlen_q, left, right)
        for first_row, col0 in itertools.product(range(0, seqlen_q, 16), range(0, seqlen_k, tile_n)):
            if not window.needs_mask(first_row, first_row + rows - 1, col0, tile_n):
                assert all(visible(window, row, key) for row in range(first_row, first_row + rows)
                           for key in range(col0, col0 + tile_n))


@pytest.mark.parametrize("tile_m", [64, 80, 128])
@pytest.mark.parametrize("left,right", WINDOWS + [(30, 20)])
def test_dq_adders(left, right, tile_m):
    """The key blocks that add into a query block's dQ, as the backward's deterministic turns count them from
    its side (block_range), are those whose query blocks (query_block_range) hold it; a query block that none
    adds into holds only rows that see no key."""
    tile_n = 128
    for seqlen_q, seqlen_k in itertools.product(SEQLENS + (1000,), SEQLENS + (4097,)):
        window = Window(seqlen_k, seqlen_k - seqlen_q, left, right)
        adders = {}
        for first_key in range(0, seqlen_k, tile_n):
            m_block_min, m_block_max = window.query_block_range(
                first_key, min(first_key + tile_n, seqlen_k) - 1, seqlen_q, tile_m)
            for m_block in range(m_block_min, m_block_max):
                adders[m_block] = adders.get(m_block, 0) + 1
        for m_block in range(-(-seqlen_q // tile_m)):
            first_row = m_block * tile_m
            last_row = min(first_row + tile_m, seqlen_q) - 1
            n_block_min, n_block_max = window.block_range(first_row, last_row, tile_n)
            assert n_block_max - n_block_min == adders.get(m_block, 0), (seqlen_q, seqlen_k, m_block)
            if n_block_max == n_block_min:
                assert not any(visible(window, row, key) for row in range(first_row, last_row + 1)
                               for key in range(seqlen_k))
