"""The PyTorch path against the fp64 textbook computation, forward and backward, for every feature."""

import math

import pytest
import torch
from torch.nn.attention.flex_attention import create_block_mask, flex_attention

import cuteattn
from cuteattn import reference
from naive import naive_attention


def rand(*shape, dtype=torch.float32):
    return torch.randn(*shape, dtype=dtype)


def qkv(batch=2, seqlen_q=33, seqlen_k=47, heads_q=4, heads_kv=2, head_dim=32, head_dim_v=None,
        dtype=torch.float32):
    return (rand(batch, seqlen_q, heads_q, head_dim, dtype=dtype),
            rand(batch, seqlen_k, heads_kv, head_dim, dtype=dtype),
            rand(batch, seqlen_k, heads_kv, head_dim_v or head_dim, dtype=dtype))


def assert_close(got, want, atol):
    got, want = got.detach().double(), want.detach().double()
    assert got.shape == want.shape, f"shape {tuple(got.shape)} != {tuple(want.shape)}"
    assert not torch.isnan(got).any(), "NaN in the result"
    finite = torch.isfinite(want)
    assert torch.equal(got[~finite], want[~finite]), "infinities differ"
    if finite.any():
        err = (got[finite] - want[finite]).abs().max().item()
        assert err <= atol * max(1.0, want[finite].abs().max().item()), f"max error {err}"


def check(run, naive, *leaves, atol=2e-5, grad_atol=1e-4):
    """`run(*leaves)` (cuteattn, fp32) against `naive(*fp64 copies)`: (out, lse) and every gradient."""
    leaves = [t.clone().requires_grad_(t.is_floating_point()) for t in leaves]
    ref_leaves = [t.detach().double().requires_grad_(t.requires_grad) for t in leaves]
    out, lse = run(*leaves)
    ref_out, ref_lse = naive(*ref_leaves)
    assert out.dtype == leaves[0].dtype and lse.dtype == torch.float32
    assert_close(out, ref_out, atol)
    assert_close(lse, ref_lse, atol)
    dout = torch.randn_like(out)
    grads = torch.autograd.grad(out, leaves, dout)
    ref_grads = torch.autograd.grad(ref_out, ref_leaves, dout.double())
    for g, r in zip(grads, ref_grads):
        assert_close(g, r, grad_atol)
    return out, lse, grads


def check_options(shapes=None, **options):
    """flash_attn_func(**options) against the naive computation with the same options."""
    naive_options = dict(options)
    if "softmax_scale" in naive_options:
        naive_options["scale"] = naive_options.pop("softmax_scale")
    if "window_size" in naive_options:
        naive_options["window"] = naive_options.pop("window_size")
    return check(lambda q, k, v: cuteattn.flash_attn_func(q, k, v, return_lse=True, **options),
                 lambda q, k, v: naive_attention(q, k, v, **naive_options),
                 *qkv(**(shapes or {})))


def test_plain():
    check_options()


def test_default_scale_is_one_over_sqrt_head_dim():
    q, k, v = qkv(head_dim=64)
    assert torch.equal(cuteattn.flash_attn_func(q, k, v),
                       cuteattn.flash_attn_func(q, k, v, softmax_scale=1 / math.sqrt(64)))
    check_options(softmax_scale=0.3)


@pytest.mark.parametrize("seqlen_q,seqlen_k", [(33, 47), (47, 33), (40, 40), (1, 17), (17, 1), (113, 113)])
def test_causal_bottom_right(seqlen_q, seqlen_k):
    out, lse, _ = check_options(dict(seqlen_q=seqlen_q, seqlen_k=seqlen_k), causal=True)
    if seqlen_q > seqlen_k:  # the first rows see no key at all
        empty = seqlen_q - seqlen_k
        assert torch.equal(out[:, :empty], torch.zeros_like(out[:, :empty]))
        assert torch.isneginf(lse[:, :, :empty]).all()


def test_causal_sees_exactly_the_aligned_keys():
    """Row i's output changes when key j <= i + Sk - Sq changes, and not when a later key does."""
    q, k, v = qkv(batch=1, seqlen_q=5, seqlen_k=9, heads_q=1, heads_kv=1)
    out = cuteattn.flash_attn_func(q, k, v, causal=True)
    for j in range(9):
        v2 = v.clone()
        v2[:, j] += 1
        changed = (cuteattn.flash_attn_func(q, k, v2, causal=True) != out).any(dim=-1).flatten()
        assert changed.tolist() == [j <= i + 4 for i in range(5)]


@pytest.mark.parametrize("window", [(8, None), (None, 5), (6, 3), (0, 0), (3, 0)])
@pytest.mark.parametrize("seqlen_q,seqlen_k", [(33, 47), (47, 33)])
def test_window(window, seqlen_q, seqlen_k):
    check_options(dict(seqlen_q=seqlen_q, seqlen_k=seqlen_k), window_size=window)


def test_window_with_causal():
    check_options(window_size=(7, None), causal=True)


def test_softcap():
    check_options(softcap=2.0, softmax_scale=1.0)


@pytest.mark.parametrize("heads_q,heads_kv", [(6, 6), (6, 2), (6, 1)])
def test_gqa_mqa(heads_q, heads_kv):
    check_options(dict(heads_q=heads_q, heads_kv=heads_kv))


def test_gqa_groups_query_heads_on_consecutive_indices():
    q, k, v = qkv(heads_q=4, heads_kv=2)
    grouped = cuteattn.flash_attn_func(q, k, v)
    expanded = cuteattn.flash_attn_func(q, k.repeat_interleave(2, dim=2), v.repeat_interleave(2, dim=2))
    torch.testing.assert_close(grouped, expanded)


def test_head_dim_v_differs():
    check_options(dict(head_dim=48, head_dim_v=24))


@pytest.mark.parametrize("causal", [False, True])
def test_learnable_sink(causal):
    q, k, v = qkv(seqlen_q=40, seqlen_k=30)
    sink = rand(4)
    _, lse, grads = check(
        lambda q, k, v, s: cuteattn.flash_attn_func(q, k, v, learnable_sink=s, causal=causal, return_lse=True),
        lambda q, k, v, s: naive_attention(q, k, v, sink=s, causal=causal), q, k, v, sink)
    assert grads[3].abs().sum() > 0
    if causal:  # the first 10 rows see only the sink: lse is the sink's logit
        torch.testing.assert_close(lse[:, :, :10], sink.view(1, 4, 1).expand(2, 4, 10))


def test_fully_masked_rows_are_zero_with_zero_gradient():
    q, k, v = [t.requires_grad_() for t in qkv(seqlen_q=20, seqlen_k=20)]
    hide_odd_rows = lambda b, h, i, j: (i % 2 == 0) & (j <= i)  # noqa: E731
    out, lse = cuteattn.flash_attn_func(q, k, v, mask_mod=hide_odd_rows, return_lse=True)
    assert torch.equal(out[:, 1::2], torch.zeros_like(out[:, 1::2]))
    assert torch.isneginf(lse[:, :, 1::2]).all() and torch.isfinite(lse[:, :, ::2]).all()
    out.backward(torch.randn_like(out))
    for t in (q, k, v):
        assert torch.isfinite(t.grad).all()
    assert torch.equal(q.grad[:, 1::2], torch.zeros_like(q.grad[:, 1::2]))


def test_seqlen_k_zero():
    q, k, v = qkv(seqlen_k=0)
    out, lse = cuteattn.flash_attn_func(q, k, v, return_lse=True)
    assert torch.equal(out, torch.zeros_like(out)) and torch.isneginf(lse).all()


def rel_bias_mod(bias, max_distance):
    def score_mod(score, b, h, q_idx, kv_idx):
        return score + bias[h, (q_idx - kv_idx).clamp(-max_distance, max_distance) + max_distance]
    return score_mod


def test_score_mod_with_captured_tensor_gets_its_gradient():
    q, k, v = qkv()
    bias = rand(4, 2 * 16 + 1)
    _, _, grads = check(
        lambda q, k, v, bias: cuteattn.flash_attn_func(q, k, v, score_mod=rel_bias_mod(bias, 16), return_lse=True),
        lambda q, k, v, bias: naive_attention(q, k, v, score_mod=rel_bias_mod(bias, 16)), q, k, v, bias)
    assert grads[3].abs().sum() > 0


def test_score_mod_sees_batch_head_and_positions():
    def mod(score, b, h, q_idx, kv_idx):
        return score + 0.1 * b - 0.2 * h + 0.01 * q_idx * kv_idx
    check_options(score_mod=mod)


def test_score_mod_after_softcap_and_scale():
    def mod(score, b, h, q_idx, kv_idx):
        return score * 3.0
    check_options(score_mod=mod, softcap=1.5, softmax_scale=0.5)


def test_mask_mod_document_masking():
    doc = torch.randint(0, 3, (2, 40)).sort(dim=1).values

    def doc_causal(b, h, q_idx, kv_idx):
        return (doc[b, q_idx] == doc[b, kv_idx]) & (q_idx >= kv_idx)
    check_options(dict(seqlen_q=40, seqlen_k=40), mask_mod=doc_causal)


def test_mods_compose_with_causal_window_softcap_gqa_sink():
    q, k, v = qkv(heads_q=6, heads_kv=2, seqlen_q=30, seqlen_k=50)
    bias, sink = rand(6, 2 * 8 + 1), rand(6)
    options = dict(causal=True, window=(20, None), softcap=3.0)
    stride2 = lambda b, h, i, j: (j % 2 == 0) | (h == 0)  # noqa: E731
    check(lambda q, k, v, bias, sink: cuteattn.flash_attn_func(
              q, k, v, causal=True, window_size=(20, None), softcap=3.0, learnable_sink=sink,
              score_mod=rel_bias_mod(bias, 8), mask_mod=stride2, return_lse=True),
          lambda q, k, v, bias, sink: naive_attention(
              q, k, v, sink=sink, score_mod=rel_bias_mod(bias, 8), mask_mod=stride2, **options),
          q, k, v, bias, sink)


@pytest.mark.parametrize("block_size", [16, (32, 8)])
def test_block_mask_matches_flex_attention(block_size):
    """A BlockMask with partial and full blocks, against FlexAttention's own computation in fp64."""
    doc = torch.tensor([0] * 64 + [1] * 6)

    def doc_causal(b, h, q_idx, kv_idx):
        return (doc[q_idx] == doc[kv_idx]) & (q_idx >= kv_idx)
    block_mask = create_block_mask(doc_causal, None, None, 70, 70, device="cpu", BLOCK_SIZE=block_size)
    assert block_mask.full_kv_num_blocks.sum() > 0 and block_mask.kv_num_blocks.sum() > 0
    q, k, v = qkv(batch=1, seqlen_q=70, seqlen_k=70, heads_q=2, heads_kv=2)
    out, lse = cuteattn.flash_attn_func(q, k, v, block_mask=block_mask, return_lse=True)
    want, want_lse = flex_attention(*(t.double().transpose(1, 2) for t in (q, k, v)),
                                    block_mask=block_mask, return_lse=True)
    torch.testing.assert_close(out, want.transpose(1, 2).float(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lse, want_lse.float(), atol=1e-5, rtol=1e-5)
    naive_out, _ = naive_attention(q, k, v, mask_mod=doc_causal)
    torch.testing.assert_close(out, naive_out.float(), atol=1e-5, rtol=1e-5)


def test_block_mask_full_blocks_skip_the_mask_mod():
    """FlexAttention's contract: inside a block listed as full, mask_mod is not consulted."""
    from torch.nn.attention.flex_attention import BlockMask

    never = lambda b, h, i, j: i < 0  # noqa: E731
    kv_num = torch.tensor([[[1, 0]]], dtype=torch.int32)
    kv_idx = torch.tensor([[[[1, 0], [0, 1]]]], dtype=torch.int32)
    full_num = torch.tensor([[[0, 1]]], dtype=torch.int32)
    full_idx = torch.tensor([[[[0, 1], [0, 1]]]], dtype=torch.int32)
    block_mask = BlockMask.from_kv_blocks(kv_num, kv_idx, full_num, full_idx, BLOCK_SIZE=16,
                                          mask_mod=never, seq_lengths=(32, 32))
    q, k, v = qkv(batch=1, seqlen_q=32, seqlen_k=32, heads_q=1, heads_kv=1)
    out, lse = cuteattn.flash_attn_func(q, k, v, block_mask=block_mask, return_lse=True)
    assert torch.isneginf(lse[0, 0, :16]).all()  # a partial block whose mask_mod hides everything
    want, _ = naive_attention(q[:, 16:], k[:, :16], v[:, :16])  # rows 16..31 see keys 0..15
    torch.testing.assert_close(out[:, 16:], want.float(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("seqlen", [1, 17, 113])
def test_odd_lengths(seqlen):
    check_options(dict(seqlen_q=seqlen, seqlen_k=seqlen), causal=True)


def test_chunks_agree_with_one_chunk(monkeypatch):
    q, k, v = qkv(seqlen_q=50, seqlen_k=30)
    bias = rand(4, 2 * 8 + 1)
    options = dict(causal=True, score_mod=rel_bias_mod(bias, 8), return_lse=True)
    whole = cuteattn.flash_attn_func(q, k, v, **options)
    monkeypatch.setattr(reference, "CHUNK_ELEMENTS", 2 * 4 * 30 * 7)  # 7 rows per chunk
    assert reference.rows_per_chunk(2, 4, 50, 30) == 7
    check(lambda q, k, v: cuteattn.flash_attn_func(q, k, v, **options),
          lambda q, k, v: naive_attention(q, k, v, causal=True, score_mod=rel_bias_mod(bias.double(), 8)),
          q, k, v)
    for a, b in zip(whole, cuteattn.flash_attn_func(q, k, v, **options)):
        torch.testing.assert_close(a, b)


def test_memory_grows_with_seqlen_not_its_square():
    rows = reference.rows_per_chunk(1, 16, 32768, 32768)
    assert rows * 16 * 32768 <= reference.CHUNK_ELEMENTS and rows < 32768


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_inputs_meet_flash_attention_rule(dtype):
    """Error vs fp32 math at most 2x that of the same computation done by PyTorch in the input dtype."""
    q, k, v = qkv(dtype=dtype, seqlen_q=64, seqlen_k=64)
    out = cuteattn.flash_attn_func(q, k, v, causal=True)
    assert out.dtype == dtype
    want, _ = naive_attention(q.float(), k.float(), v.float(), causal=True)
    mask = torch.ones(64, 64, dtype=torch.bool).tril()
    pt = torch.nn.functional.scaled_dot_product_attention(
        q.transpose(1, 2), k.repeat_interleave(2, 2).transpose(1, 2), v.repeat_interleave(2, 2).transpose(1, 2),
        attn_mask=mask).transpose(1, 2)
    pt_err = (pt.double() - want).abs().max().item()
    assert (out.double() - want).abs().max().item() <= 2 * pt_err + 1e-5


def test_output_rows_are_all_written():
    q, k, v = qkv(seqlen_q=113, seqlen_k=17)
    out = cuteattn.flash_attn_func(q, k, v)
    assert torch.isfinite(out).all() and (out != 0).any(dim=-1).all()


def test_bwd_preprocess_reference():
    out, dout = rand(2, 17, 3, 64), rand(2, 17, 3, 64)
    lse = rand(2, 3, 17)
    lse[0, 1, 5] = -math.inf
    dpsum, lse_log2 = reference.bwd_preprocess(out, dout, lse)
    torch.testing.assert_close(dpsum, torch.einsum("bshd,bshd->bhs", out, dout))
    assert lse_log2[0, 1, 5] == 0
    torch.testing.assert_close(lse_log2[1], lse[1] * math.log2(math.e))
