"""A band mask_mod runs as the kernels' window: the window found shows exactly the mask's keys (no GPU needed)."""

import itertools

import pytest
import torch

from cuteattn import reference
from cuteattn.mods import band, trace

W = 5

BANDS = {
    "causal": lambda b, h, q_idx, kv_idx: q_idx >= kv_idx,
    "sliding": lambda b, h, q_idx, kv_idx: (q_idx >= kv_idx) & (q_idx - kv_idx <= W),
    "symmetric": lambda b, h, q_idx, kv_idx: (q_idx - kv_idx).abs() <= W,
    "ahead": lambda b, h, q_idx, kv_idx: (q_idx - kv_idx <= -2) & (q_idx - kv_idx >= -8),
    "everything": lambda b, h, q_idx, kv_idx: q_idx - kv_idx > -(1 << 20),
    "shifted causal": lambda b, h, q_idx, kv_idx: q_idx + 3 >= kv_idx,
    "shifted window": lambda b, h, q_idx, kv_idx: (q_idx + 2 >= kv_idx) & (q_idx + 2 - kv_idx <= W),
    "negated": lambda b, h, q_idx, kv_idx: -(kv_idx - q_idx) + 1 > 0,
}
NOT_BANDS = {
    "dilated": lambda b, h, q_idx, kv_idx: (q_idx - kv_idx) % 2 == 0,
    "two runs": lambda b, h, q_idx, kv_idx: (q_idx - kv_idx).abs() > W,
    "nothing": lambda b, h, q_idx, kv_idx: q_idx < kv_idx - (1 << 20),
    "per head": lambda b, h, q_idx, kv_idx: q_idx - kv_idx <= h,
    "prefix": lambda b, h, q_idx, kv_idx: (q_idx >= kv_idx) | (kv_idx < 4),
    "scaled": lambda b, h, q_idx, kv_idx: q_idx * 2 >= kv_idx,
    "sum": lambda b, h, q_idx, kv_idx: q_idx + kv_idx <= 30,
    "query only": lambda b, h, q_idx, kv_idx: q_idx >= 3,
    "select": lambda b, h, q_idx, kv_idx: torch.where(q_idx - kv_idx > 0, q_idx, kv_idx) > 5,
}
SHAPES = list(itertools.product((1, 7, 17, 40), (1, 9, 17, 40)))


def _mask_grid(mask_mod, seqlen_q, seqlen_k):
    q_idx = torch.arange(seqlen_q, dtype=torch.int32)[:, None]
    kv_idx = torch.arange(seqlen_k, dtype=torch.int32)[None, :]
    zero = torch.zeros((), dtype=torch.int32)
    return mask_mod(zero, zero, q_idx, kv_idx).expand(seqlen_q, seqlen_k)


def _window_grid(window, seqlen_q, seqlen_k):
    left, right = window
    diagonal = torch.arange(seqlen_q)[:, None] + seqlen_k - seqlen_q
    kv_idx = torch.arange(seqlen_k)[None, :]
    visible = torch.ones(seqlen_q, seqlen_k, dtype=torch.bool)
    if left is not None:
        visible &= kv_idx >= diagonal - left
    if right is not None:
        visible &= kv_idx <= diagonal + right
    return visible


@pytest.mark.parametrize("name", [*BANDS, *NOT_BANDS])
def test_window_found_shows_the_masks_keys(name):
    mask_mod = {**BANDS, **NOT_BANDS}[name]
    converted = 0
    for seqlen_q, seqlen_k in SHAPES:
        window = band.window_of(trace.trace_mask_mod(mask_mod), seqlen_q, seqlen_k)
        if window is None:
            continue
        converted += 1
        assert all(w is None or w >= 0 for w in window)
        assert torch.equal(_window_grid(window, seqlen_q, seqlen_k), _mask_grid(mask_mod, seqlen_q, seqlen_k)), \
            (seqlen_q, seqlen_k, window)
    if name in BANDS:
        assert converted >= 2
    else:
        assert band.window_of(trace.trace_mask_mod(mask_mod), 40, 40) is None


def test_windows_found():
    def window(name, seqlen_q, seqlen_k):
        return band.window_of(trace.trace_mask_mod(BANDS[name]), seqlen_q, seqlen_k)

    assert window("causal", 40, 40) == (None, 0)
    assert window("sliding", 40, 40) == (W, 0)
    assert window("symmetric", 40, 40) == (W, W)
    assert window("symmetric", 17, 40) is None  # its right edge would sit 18 keys left of the bottom-right diagonal
    assert window("ahead", 40, 40) is None
    assert window("ahead", 7, 9) == (0, None)  # keys 2 to 8 ahead of the query: from the bottom-right diagonal on
    assert window("everything", 17, 40) == (None, None)
    assert window("shifted causal", 40, 40) == (None, 3)
    assert window("shifted window", 40, 40) == (W - 2, 2)


def test_captured_tensor_keeps_the_mask():
    limit = torch.tensor([3, 4])
    traced = trace.trace_mask_mod(lambda b, h, q_idx, kv_idx: q_idx - kv_idx <= limit[0])
    assert band.window_of(traced, 17, 17) is None


@pytest.mark.parametrize("causal,window", [(False, (None, None)), (True, (None, None)), (False, (3, None)),
                                           (False, (None, 2))])
@pytest.mark.parametrize("seqlen_q,seqlen_k", [(17, 17), (40, 17), (9, 40), (1, 1)])
def test_same_attention_through_the_window(causal, window, seqlen_q, seqlen_k):
    """The PyTorch path gives the same out and lse with the mask_mod as with the window it became (empty rows too)."""
    torch.manual_seed(0)
    q = torch.randn(2, seqlen_q, 2, 16)
    k, v = torch.randn(2, seqlen_k, 2, 16), torch.randn(2, seqlen_k, 2, 16)
    for mask_mod in BANDS.values():
        right = 0 if causal else window[1]
        opts = reference.Options(softmax_scale=0.25, window_left=window[0], window_right=right, softcap=0.0,
                                 learnable_sink=None, score_mod=None, mask_mod=mask_mod, block_mask=None)
        as_window = band.as_window(opts, seqlen_q, seqlen_k)
        if as_window is opts:
            continue
        assert as_window.mask_mod is None
        out, lse = reference.attention(q, k, v, opts)
        out_w, lse_w = reference.attention(q, k, v, as_window)
        torch.testing.assert_close(out_w, out, atol=1e-6, rtol=1e-6)
        assert torch.equal(lse_w.isinf(), lse.isinf())
        torch.testing.assert_close(lse_w, lse, atol=1e-5, rtol=1e-5)


def test_block_mask_keeps_the_mask_mod():
    opts = reference.Options(softmax_scale=1.0, window_left=None, window_right=None, softcap=0.0,
                             learnable_sink=None, score_mod=None, mask_mod=BANDS["causal"], block_mask=object())
    assert band.as_window(opts, 17, 17) is opts


DOC = (torch.arange(40, dtype=torch.int32) // 13).view(1, -1)  # documents of 13 tokens
LIMIT = torch.tensor([5])
SPLITS = {  # mask_mods that AND a band with other terms, and their band's window at 40 x 40
    "documents": (lambda b, h, q_idx, kv_idx: (DOC[0, q_idx] == DOC[0, kv_idx]) & (q_idx >= kv_idx), (None, 0)),
    "documents, band first": (lambda b, h, q_idx, kv_idx: (q_idx >= kv_idx) & (DOC[0, q_idx] == DOC[0, kv_idx]),
                              (None, 0)),
    "window in documents per head": (lambda b, h, q_idx, kv_idx: (q_idx - kv_idx <= W)
                                     & (DOC[0, q_idx] == DOC[0, kv_idx]) & (q_idx >= kv_idx) & (h < 1), (W, 0)),
}
NO_SPLITS = {
    "documents only": lambda b, h, q_idx, kv_idx: DOC[0, q_idx] == DOC[0, kv_idx],
    "or": lambda b, h, q_idx, kv_idx: (DOC[0, q_idx] == DOC[0, kv_idx]) | (q_idx >= kv_idx),
    "captured band": lambda b, h, q_idx, kv_idx: (q_idx - kv_idx <= LIMIT[0]) & (DOC[0, q_idx] == DOC[0, kv_idx]),
    "dilated": lambda b, h, q_idx, kv_idx: ((q_idx - kv_idx) % 2 == 0) & (DOC[0, q_idx] == DOC[0, kv_idx]),
}


@pytest.mark.parametrize("name", SPLITS)
@pytest.mark.parametrize("seqlen_q,seqlen_k", [(40, 40), (17, 40), (40, 17), (1, 1)])
def test_a_band_and_other_terms_split(name, seqlen_q, seqlen_k):
    """A band AND-ed with other terms runs as the window and a mask_mod of the other terms: the same attention on
    the PyTorch path, the split made once per trace of the function."""
    mask_mod, window = SPLITS[name]
    torch.manual_seed(0)
    q = torch.randn(2, seqlen_q, 2, 16)
    k, v = torch.randn(2, seqlen_k, 2, 16), torch.randn(2, seqlen_k, 2, 16)
    opts = reference.Options(softmax_scale=0.25, window_left=None, window_right=None, softcap=0.0,
                             learnable_sink=None, score_mod=None, mask_mod=mask_mod, block_mask=None)
    split = band.as_window(opts, seqlen_q, seqlen_k)
    if seqlen_q == seqlen_k == 40:
        assert (split.window_left, split.window_right) == window
    if split is opts:
        return
    assert split.mask_mod is band.as_window(opts, seqlen_q, seqlen_k).mask_mod
    assert trace.trace_mask_mod(split.mask_mod).captured == (DOC,)
    out, lse = reference.attention(q, k, v, opts)
    out_s, lse_s = reference.attention(q, k, v, split)
    torch.testing.assert_close(out_s, out, atol=1e-6, rtol=1e-6)
    assert torch.equal(lse_s.isinf(), lse.isinf())
    torch.testing.assert_close(lse_s, lse, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", NO_SPLITS)
def test_no_split_without_a_band_window(name):
    opts = reference.Options(softmax_scale=1.0, window_left=None, window_right=None, softcap=0.0,
                             learnable_sink=None, score_mod=None, mask_mod=NO_SPLITS[name], block_mask=None)
    assert band.as_window(opts, 40, 40) is opts
