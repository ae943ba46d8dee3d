"""Packed GQA on the host, with no GPU: the kernel's view of q, out and lse as packed rows (`packed_modes`: the
query heads of a KV head as the rows of one head, in place, no copy), and when a call packs (`forward.gqa_pack`).
The kernel's part, row r as query r // pack (`masking.Window.pack`), is emulated here over that view and checked
against the PyTorch path; test_masking checks its block arithmetic."""

import math
from dataclasses import replace

import pytest
import torch

pytest.importorskip("cutlass")

from cuteattn import reference  # noqa: E402
from cuteattn.sm90 import forward  # noqa: E402
from cuteattn.sm90.fwd_kernel import packed_modes  # noqa: E402

PLAIN = reference.Options(softmax_scale=0.3, window_left=None, window_right=None, softcap=0.0, learnable_sink=None,
                          score_mod=None, mask_mod=None, block_mask=None)


def offset(coord: tuple, stride: tuple, shape: tuple) -> int:
    """The element of a coordinate, as CuTe finds it: an integer in a hierarchical mode splits first-fastest."""
    total = 0
    for c, d, n in zip(coord, stride, shape):
        if isinstance(n, tuple):
            for size, step in zip(n, d):
                total += c % size * step
                c //= size
        else:
            total += c * d
    return total


def packed(t: torch.Tensor, pack: int, row_mode: int, head_mode: int):
    """The packed view of `t` (`packed_modes`) read into a tensor of its shape, and each element's offset in t."""
    shape, stride = packed_modes(t.shape, t.stride(), pack, row_mode, head_mode)
    flat = [n if not isinstance(n, tuple) else n[0] * n[1] for n in shape]
    offsets = torch.tensor([offset(c, stride, shape) for c in torch.cartesian_prod(
        *(torch.arange(n) for n in flat)).view(-1, len(flat)).tolist()]).view(flat)
    return t.as_strided((int(offsets.max()) + 1,), (1,))[offsets], offsets


def test_rows_hold_the_query_heads_of_their_kv_head():
    q = torch.randn(2, 5, 12, 16)[:, :, :, :8]  # strided: the view keeps every stride
    rows, _ = packed(q, 4, 1, 2)
    assert rows.shape == (2, 20, 3, 8)
    for row in range(20):
        for kv_head in range(3):
            assert torch.equal(rows[:, row, kv_head], q[:, row // 4, kv_head * 4 + row % 4])
    lse = torch.randn(2, 12, 5)
    lse_rows, _ = packed(lse, 4, 2, 1)
    assert lse_rows.shape == (2, 3, 20) and torch.equal(lse_rows[1, 2, 13], lse[1, 2 * 4 + 1, 3])


def attend_packed_rows(rows, k, v, opts, pack):
    """What the kernel computes over packed rows: row r of KV head g attends as query r // pack, in fp32."""
    batch, n_rows, heads_kv, _ = rows.shape
    seqlen_q, seqlen_k = n_rows // pack, k.shape[1]
    query = (torch.arange(n_rows) // pack).view(-1, 1)
    key = torch.arange(seqlen_k).view(1, -1)
    diagonal = seqlen_k - seqlen_q
    visible = torch.ones(n_rows, seqlen_k, dtype=torch.bool)
    if opts.window_right is not None:
        visible &= key <= query + diagonal + opts.window_right
    if opts.window_left is not None:
        visible &= key >= query + diagonal - opts.window_left
    scores = torch.einsum("brgd,bkgd->bgrk", rows, k) * opts.softmax_scale
    scores = scores.masked_fill(~visible, -math.inf)
    lse = torch.logsumexp(scores, dim=-1)
    probs = torch.exp(scores - lse.unsqueeze(-1)).nan_to_num()
    return torch.einsum("bgrk,bkgd->brgd", probs, v), lse


@pytest.mark.parametrize("window", [(None, None), (None, 0), (5, 0), (3, 2)])
@pytest.mark.parametrize("seqlen_q,seqlen_k", [(1, 17), (7, 7), (13, 40)])
@pytest.mark.parametrize("pack", [2, 4])
def test_packed_rows_write_the_pytorch_path(window, seqlen_q, seqlen_k, pack):
    opts = replace(PLAIN, window_left=window[0], window_right=window[1])
    q = torch.randn(2, seqlen_q, 2 * pack, 16)
    k, v = torch.randn(2, seqlen_k, 2, 16), torch.randn(2, seqlen_k, 2, 16)
    out, lse = torch.full_like(q, math.nan), torch.full((2, 2 * pack, seqlen_q), math.nan)
    out_rows, lse_rows = attend_packed_rows(packed(q, pack, 1, 2)[0], k, v, opts, pack)
    out.view(-1)[packed(out, pack, 1, 2)[1]] = out_rows  # contiguous: offsets index the flat view
    lse.view(-1)[packed(lse, pack, 2, 1)[1]] = lse_rows
    want_out, want_lse = reference.attention(q, k, v, opts)
    torch.testing.assert_close(out, want_out.float(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lse, want_lse, atol=1e-5, rtol=1e-5)


def test_when_a_call_packs():
    q, k = torch.empty(1, 16, 8, 64), torch.empty(1, 100, 2, 64)
    assert forward.gqa_pack(q, k, PLAIN, None) == 4
    assert forward.gqa_pack(q, k, PLAIN, False) == 1
    assert forward.gqa_pack(q, k[:, :, :1].expand(-1, -1, 8, -1), PLAIN, True) == 1  # not grouped
    assert forward.gqa_pack(q[:, :, :6], k, PLAIN, True) == 1  # a group of 3 does not divide a TMA box
    assert forward.gqa_pack(q, k, replace(PLAIN, learnable_sink=torch.zeros(8)), True) == 1
    assert forward.gqa_pack(q, k, replace(PLAIN, score_mod=lambda s, b, h, q_idx, kv_idx: s), None) == 1
    long = torch.empty(1, forward.PACK_GQA_MAX_QUERIES + 1, 8, 64)
    assert forward.gqa_pack(long, k, PLAIN, None) == 1
    assert forward.gqa_pack(long, k, PLAIN, True) == 4
