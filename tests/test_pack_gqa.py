"""Packed GQA on the host, with no GPU: the query heads of a KV head as the rows of one head
(`forward.packed_queries`), the results back in place (`forward.unpacked`), and when a call packs
(`forward.gqa_pack`). The kernel's part, row r as query r // pack (`masking.Window.pack`), is emulated here
on the packed rows and checked against the PyTorch path; test_masking checks its block arithmetic."""

import math
from dataclasses import replace

import pytest
import torch

pytest.importorskip("cutlass")

from cuteattn import reference  # noqa: E402
from cuteattn.sm90 import forward  # noqa: E402

PLAIN = reference.Options(softmax_scale=0.3, window_left=None, window_right=None, softcap=0.0, learnable_sink=None,
                          score_mod=None, mask_mod=None, block_mask=None)


def test_rows_hold_the_query_heads_of_their_kv_head():
    q = torch.randn(2, 5, 6, 8)
    rows, out_rows, lse_rows = forward.packed_queries(q, 3, 16)
    assert rows.shape == (2, 15, 2, 8) and out_rows.shape == (2, 15, 2, 16) and lse_rows.shape == (2, 2, 15)
    for row in range(15):
        for kv_head in range(2):
            assert torch.equal(rows[:, row, kv_head], q[:, row // 3, kv_head * 3 + row % 3])


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
def test_packed_rows_unpack_to_the_pytorch_path(window, seqlen_q, seqlen_k, pack):
    opts = replace(PLAIN, window_left=window[0], window_right=window[1])
    q = torch.randn(2, seqlen_q, 2 * pack, 16)
    k, v = torch.randn(2, seqlen_k, 2, 16), torch.randn(2, seqlen_k, 2, 16)
    rows, out_rows, lse_rows = forward.packed_queries(q, pack, 16)
    out_rows[:], lse_rows[:] = attend_packed_rows(rows, k, v, opts, pack)
    out, lse = forward.unpacked(torch.full_like(q, math.nan), torch.full((2, 2 * pack, seqlen_q), math.nan),
                                out_rows, lse_rows, pack)
    want_out, want_lse = reference.attention(q, k, v, opts)
    torch.testing.assert_close(out, want_out.float(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lse, want_lse, atol=1e-5, rtol=1e-5)


def test_when_a_call_packs():
    q, k = torch.empty(1, 16, 8, 64), torch.empty(1, 100, 2, 64)
    assert forward.gqa_pack(q, k, PLAIN, None) == 4
    assert forward.gqa_pack(q, k, PLAIN, False) == 1
    assert forward.gqa_pack(q, k[:, :, :1].expand(-1, -1, 8, -1), PLAIN, True) == 1  # not grouped
    assert forward.gqa_pack(q, k, replace(PLAIN, learnable_sink=torch.zeros(8)), True) == 1
    assert forward.gqa_pack(q, k, replace(PLAIN, score_mod=lambda s, b, h, q_idx, kv_idx: s), None) == 1
    long = torch.empty(1, forward.PACK_GQA_MAX_QUERIES + 1, 8, 64)
    assert forward.gqa_pack(long, k, PLAIN, None) == 1
    assert forward.gqa_pack(long, k, PLAIN, True) == 4
