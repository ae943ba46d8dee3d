"""flash_attn_varlen_func on the PyTorch path: every layout against one dense call per sequence."""

import math

import pytest
import torch

import cuteattn
from naive import naive_attention

HEADS_Q, HEADS_KV, HEAD_DIM = 4, 2, 32


def cu(lengths):
    return torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)


def shift_batch(mod, offset):
    """The mod as a lone sequence must see it: batch index 0 becomes `offset`."""
    def shifted(*args):
        *score, b, h, q_idx, kv_idx = args
        return mod(*score, b + offset, h, q_idx, kv_idx)
    return shifted


def per_sequence(q_seqs, k_seqs, v_seqs, **options):
    """The naive fp64 result of each sequence alone, the mods seeing b = the sequence's index."""
    outs, lses = [], []
    for i, (q, k, v) in enumerate(zip(q_seqs, k_seqs, v_seqs)):
        seq_options = {name: shift_batch(o, i) if name.endswith("_mod") else o for name, o in options.items()}
        out, lse = naive_attention(q[None], k[None], v[None], **seq_options)
        outs.append(out[0])
        lses.append(lse[0])
    return outs, lses


@pytest.mark.parametrize("causal", [False, True])
def test_packed_q_and_k(causal):
    q_lens, k_lens = [5, 0, 17, 1], [9, 4, 13, 1]
    q = torch.randn(sum(q_lens), HEADS_Q, HEAD_DIM, requires_grad=True)
    k = torch.randn(sum(k_lens), HEADS_KV, HEAD_DIM, requires_grad=True)
    v = torch.randn(sum(k_lens), HEADS_KV, HEAD_DIM, requires_grad=True)
    out, lse = cuteattn.flash_attn_varlen_func(q, k, v, cu(q_lens), cu(k_lens), max(q_lens), max(k_lens),
                                               causal=causal, return_lse=True)
    assert out.shape == q.shape and lse.shape == (HEADS_Q, sum(q_lens))
    outs, lses = per_sequence(q.detach().double().split(q_lens), k.detach().double().split(k_lens),
                              v.detach().double().split(k_lens), causal=causal)
    torch.testing.assert_close(out, torch.cat(outs).float(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lse, torch.cat(lses, dim=1).float(), atol=1e-5, rtol=1e-5)
    out.sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))


def test_mods_see_the_sequence_index_and_local_positions():
    q_lens, k_lens = [6, 11], [8, 11]
    q, k, v = (torch.randn(sum(n), h, HEAD_DIM) for n, h in ((q_lens, HEADS_Q), (k_lens, HEADS_KV), (k_lens, HEADS_KV)))
    score_mod = lambda s, b, h, i, j: s + 0.5 * b - 0.1 * (i - j).abs()  # noqa: E731
    mask_mod = lambda b, h, i, j: (j % 3 != 1) | (b == 0)  # noqa: E731
    out = cuteattn.flash_attn_varlen_func(q, k, v, cu(q_lens), cu(k_lens), score_mod=score_mod, mask_mod=mask_mod)
    outs, _ = per_sequence(q.double().split(q_lens), k.double().split(k_lens), v.double().split(k_lens),
                           score_mod=score_mod, mask_mod=mask_mod)
    torch.testing.assert_close(out, torch.cat(outs).float(), atol=1e-5, rtol=1e-5)


def test_seqused_leaves_unused_rows_zero():
    q_lens, k_lens = [7, 9], [10, 12]
    used_q, used_k = [4, 9], [10, 3]
    q = torch.randn(sum(q_lens), HEADS_Q, HEAD_DIM)
    k, v = (torch.randn(sum(k_lens), HEADS_KV, HEAD_DIM) for _ in range(2))
    out, lse = cuteattn.flash_attn_varlen_func(
        q, k, v, cu(q_lens), cu(k_lens), seqused_q=torch.tensor(used_q, dtype=torch.int32),
        seqused_k=torch.tensor(used_k, dtype=torch.int32), causal=True, return_lse=True)
    q_seqs = [s[:n] for s, n in zip(q.double().split(q_lens), used_q)]
    k_seqs = [s[:n] for s, n in zip(k.double().split(k_lens), used_k)]
    v_seqs = [s[:n] for s, n in zip(v.double().split(k_lens), used_k)]
    outs, lses = per_sequence(q_seqs, k_seqs, v_seqs, causal=True)
    torch.testing.assert_close(out[:4], outs[0].float(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[7:], outs[1].float(), atol=1e-5, rtol=1e-5)
    assert torch.equal(out[4:7], torch.zeros_like(out[4:7])) and torch.isneginf(lse[:, 4:7]).all()
    torch.testing.assert_close(lse[:, 7:], lses[1].float(), atol=1e-5, rtol=1e-5)


def test_paged_kv_cache():
    page_size, k_lens = 4, [9, 3, 0]
    num_pages = 8
    k_cache, v_cache = (torch.randn(num_pages, page_size, HEADS_KV, HEAD_DIM) for _ in range(2))
    page_table = torch.tensor([[5, 0, 7], [2, 6, 6], [1, 1, 1]], dtype=torch.int32)
    q = torch.randn(3, 2, HEADS_Q, HEAD_DIM)  # batched q: 2 new tokens per sequence
    out, lse = cuteattn.flash_attn_varlen_func(q, k_cache, v_cache, seqused_k=torch.tensor(k_lens, dtype=torch.int32),
                                               page_table=page_table, causal=True, return_lse=True)
    assert out.shape == (3, 2, HEADS_Q, HEAD_DIM) and lse.shape == (3, HEADS_Q, 2)
    k_seqs = [k_cache.double()[page_table[i].long()].flatten(0, 1)[:n] for i, n in enumerate(k_lens)]
    v_seqs = [v_cache.double()[page_table[i].long()].flatten(0, 1)[:n] for i, n in enumerate(k_lens)]
    outs, lses = per_sequence(q.double(), k_seqs, v_seqs, causal=True)
    torch.testing.assert_close(out, torch.stack(outs).float(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lse, torch.stack(lses).float(), atol=1e-5, rtol=1e-5)
    assert torch.equal(out[2], torch.zeros_like(out[2]))  # no keys: zeros, lse = -inf
    assert torch.isneginf(lse[2]).all()


def test_batched_k_with_packed_q():
    q_lens = [3, 8]
    q = torch.randn(sum(q_lens), HEADS_Q, HEAD_DIM)
    k, v = (torch.randn(2, 10, HEADS_KV, HEAD_DIM) for _ in range(2))
    out = cuteattn.flash_attn_varlen_func(q, k, v, cu_seqlens_q=cu(q_lens), window_size=(3, 2))
    outs, _ = per_sequence(q.double().split(q_lens), k.double(), v.double(), window=(3, 2))
    torch.testing.assert_close(out, torch.cat(outs).float(), atol=1e-5, rtol=1e-5)


def test_cu_seqlens_may_leave_tokens_after_the_last_sequence():
    q = torch.randn(12, HEADS_Q, HEAD_DIM)
    k, v = (torch.randn(12, HEADS_KV, HEAD_DIM) for _ in range(2))
    lens = cu([4, 5])
    out, lse = cuteattn.flash_attn_varlen_func(q, k, v, lens, lens, return_lse=True)
    assert torch.equal(out[9:], torch.zeros_like(out[9:])) and torch.isneginf(lse[:, 9:]).all()
    want, _ = naive_attention(q[None, 4:9].double(), k[None, 4:9].double(), v[None, 4:9].double())
    torch.testing.assert_close(out[4:9], want[0].float(), atol=1e-5, rtol=1e-5)


def test_learnable_sink_varlen():
    q_lens = [5, 6]
    q = torch.randn(sum(q_lens), HEADS_Q, HEAD_DIM)
    k, v = (torch.randn(sum(q_lens), HEADS_KV, HEAD_DIM) for _ in range(2))
    sink = torch.randn(HEADS_Q)
    out = cuteattn.flash_attn_varlen_func(q, k, v, cu(q_lens), cu(q_lens), learnable_sink=sink, causal=True)
    outs, _ = per_sequence(q.double().split(q_lens), k.double().split(q_lens), v.double().split(q_lens),
                           sink=sink.double(), causal=True)
    torch.testing.assert_close(out, torch.cat(outs).float(), atol=1e-5, rtol=1e-5)
    assert math.isfinite(out.abs().sum().item())
