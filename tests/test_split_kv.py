"""Split-KV on the host, with no GPU: into how many parts a call's keys are split (`forward.kv_splits`). The
kernel's parts and their merge (`fwd_combine`) are checked on the GPU (test_gpu_fwd_sm90.test_split_kv)."""

from dataclasses import replace

import pytest
import torch

pytest.importorskip("cutlass")

from cuteattn import reference  # noqa: E402
from cuteattn.sm90 import forward  # noqa: E402
from cuteattn.sm90.fwd_kernel import FwdConfig  # noqa: E402

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
