"""Split-KV on the host, with no GPU: into how many parts a call's keys are split (`forward.kv_splits`), and
which last tiles of a launch are (`forward.tail_split`, `backward.tail_split`). The kernels' parts and their
merges are checked on the GPU (test_gpu_fwd_sm90.test_split_kv and test_split_tail, test_gpu_bwd_sm90)."""

from dataclasses import replace

import pytest
import torch

pytest.importorskip("cutlass")

from cuteattn import reference  # noqa: E402
from cuteattn.sm90 import forward  # noqa: E402
from cuteattn.sm90.fwd_config import FwdConfig  # noqa: E402

PLAIN = reference.Options(softmax_scale=0.3, window_left=None, window_right=None, softcap=0.0, learnable_sink=None,
                          score_mod=None, mask_mod=None, block_mask=None)
CONFIG = FwdConfig(tile_n=128)  # tile_m 128
SMS = 132


@pytest.fixture(autouse=True)
def h100(monkeypatch):
    monkeypatch.setattr(forward, "sm_count", lambda index: SMS)


def splits(batch, seqlen_q, heads, heads_kv, seqlen_k, hint, opts=PLAIN, pack=1):
    q = torch.empty(batch, seqlen_q, heads, 64)
    k = torch.empty(batch, seqlen_k, heads_kv, 64)
    return forward.kv_splits(q, k, opts, CONFIG, pack, hint)


def test_num_splits_one_never_splits():
    assert splits(1, 1, 8, 8, 16384, 1) == 1


def test_a_given_count_is_kept_up_to_one_part_a_key_block():
    assert splits(4, 1000, 8, 8, 4096, 3) == 3
    assert splits(1, 1, 8, 8, 4096, 64) == 32
    assert splits(1, 1, 8, 8, 100, 5) == 1


def test_chosen_parts_fill_the_sms_with_few_tiles():
    # 8 tiles of 4096 keys (32 blocks): 132 // 8 = 16 parts would leave parts of 2 blocks; 4 blocks a part
    assert splits(1, 1, 8, 8, 4096, 0) == 8
    # 4 * 32 packed heads over 8 KV heads, one query: 32 tiles, 16k keys
    assert splits(4, 1, 32, 8, 16384, 0, pack=4) == 4
    assert splits(1, 1, 1, 1, 1 << 20, 0) == forward.MAX_SPLITS
    # over a quarter as many tiles as SMs, or keys too few for MIN_SPLITS parts: one
    assert splits(132, 1, 1, 1, 16384, 0) == 1
    assert splits(34, 1, 1, 1, 16384, 0) == 1
    assert splits(33, 1, 1, 1, 16384, 0) == 4
    assert splits(1, 1, 8, 8, 2048, 0) == 4
    assert splits(1, 1, 8, 8, 1920, 0) == 1


@pytest.mark.parametrize("feature", [dict(learnable_sink=torch.zeros(8)), dict(mask_mod=lambda b, h, q, k: q >= k),
                                     dict(block_mask=object())])
def test_sink_and_masks_never_split(feature):
    assert splits(1, 1, 8, 8, 16384, 0, replace(PLAIN, **feature)) == 1
    assert splits(1, 1, 8, 8, 16384, 4, replace(PLAIN, **feature)) == 1


def tail(batch, seqlen_q, heads, seqlen_k, hint=0, opts=PLAIN, pack=1, config=CONFIG):
    q = torch.empty(batch, seqlen_q, heads, 64)
    k = torch.empty(batch, seqlen_k, heads, 64)
    return forward.tail_split(q, k, opts, config, pack, hint)


def test_a_tail_that_leaves_most_sms_idle_is_split():
    # 2 x 16 heads x 96 tiles of 128 rows, 12k keys: 3072 tiles = 23 waves and 36 tiles; in 7 parts of 14 blocks,
    # 252 parts take 2 waves of 14 + 3 blocks, against one of 96 + 3
    assert tail(2, 12288, 16, 12288) == (36, 7)
    # 26 heads x 128 tiles, 16k keys: 25 waves and 28 tiles; 112 parts of 32 blocks in one wave
    assert tail(1, 16384, 26, 16384) == (28, 4)


def test_a_full_last_wave_or_short_keys_are_not_split():
    assert tail(1, 16384, 33, 16384) == (0, 1)  # 33 * 128 tiles: 32 full waves
    assert tail(1, 16384, 16, 16384) == (0, 1)  # 15 waves and 68 tiles: over a third of the SMs
    assert tail(2, 12288, 16, 512) == (0, 1)  # 4 blocks a tile: no two parts of MIN_SPLIT_BLOCKS


@pytest.mark.parametrize("feature", [dict(window_right=0), dict(window_left=100), dict(learnable_sink=torch.zeros(8)),
                                     dict(mask_mod=lambda b, h, q, k: q >= k), dict(block_mask=object())])
def test_a_tail_is_split_only_where_tiles_see_every_key(feature):
    assert tail(2, 12288, 16, 12288, opts=replace(PLAIN, **feature)) == (0, 1)


def test_a_tail_is_split_only_where_cuteattn_chooses_on_one_cta_a_tile():
    assert tail(2, 12288, 16, 12288, hint=1) == (0, 1)
    assert tail(2, 12288, 16, 12288, pack=2) == (0, 1)
    assert tail(2, 12288, 16, 12288, config=replace(CONFIG, persistent=True, dynamic=True)) == (0, 1)


def test_the_backward_splits_the_steps_of_its_last_key_blocks(monkeypatch):
    from cuteattn.sm90 import backward

    monkeypatch.setattr(backward, "sm_count", lambda index: SMS)
    q = k = v = torch.empty(2, 12288, 16, 128)
    config = backward.default_config(128, PLAIN)
    # 2 x 16 heads x 96 key blocks: 23 waves and 36 blocks of 192 steps; 7 parts of 28 steps in 2 waves
    assert backward.tail_split(q, k, v, PLAIN, config, False) == (36, 7)
    full = torch.empty(1, 16384, 16, 128)  # 15 waves and 68 blocks: over a third of the SMs
    assert backward.tail_split(full, full, full, PLAIN, config, False) == (0, 1)
    assert backward.tail_split(q, k, v, PLAIN, config, True) == (0, 1)  # deterministic: dQ in key block order
    assert backward.tail_split(q, k, v, replace(PLAIN, window_right=0), config, False) == (0, 1)
    assert backward.tail_split(q, k, v, PLAIN, replace(config, tail_split=False), False) == (0, 1)
    wide = torch.empty(1, 16384, 16, 256)
    assert backward.tail_split(wide, wide, wide, PLAIN, backward.default_config(256, PLAIN), False) == (0, 1)
    # hdim 192 (the head dim on the wgmma's M, 96 keys a CTA): 2 x 10 heads x 86 key blocks at 8k, 13 waves and 4
    # blocks of 128 steps, 8 parts of 16; (192, 128) the same
    q = k = torch.empty(2, 8192, 10, 192)
    for v in (q, torch.empty(2, 8192, 10, 128)):
        assert backward.tail_split(q, k, v, PLAIN, backward.default_config(192, PLAIN, v.shape[-1]), False) == (4, 8)
