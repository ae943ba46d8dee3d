"""The sm90 forward kernel against the PyTorch path, with FlashAttention's error rule."""

import math

import pytest
import torch

import cuteattn
from cuteattn import reference

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.get_device_capability()[0] != 9,
                       reason="needs an sm90 GPU"),
]


def options(head_dim, causal, softmax_scale=None):
    return reference.Options(
        softmax_scale=softmax_scale or 1 / math.sqrt(head_dim), window_left=None,
        window_right=0 if causal else None, softcap=0.0, learnable_sink=None, score_mod=None, mask_mod=None,
        block_mask=None)


def low_precision(q, k, v, opts):
    """The same attention done by PyTorch in the input dtype: scores, probabilities and output rounded."""
    group = q.shape[2] // k.shape[2]
    k, v = k.repeat_interleave(group, 2), v.repeat_interleave(group, 2)
    s = torch.einsum("bqhd,bkhd->bhqk", q, k) * opts.softmax_scale
    if opts.window_right == 0:
        seqlen_q, seqlen_k = q.shape[1], k.shape[1]
        keep = torch.ones(seqlen_q, seqlen_k, dtype=torch.bool, device=q.device).tril(seqlen_k - seqlen_q)
        s = s.masked_fill(~keep, -math.inf)
    p = torch.softmax(s.float(), dim=-1).nan_to_num(0.0).to(q.dtype)
    return torch.einsum("bhqk,bkhd->bqhd", p, v)


def check(batch, seqlen_q, seqlen_k, heads, heads_kv, head_dim, causal, dtype, make=None):
    from cuteattn.sm90 import forward

    make = make or (lambda *shape: torch.randn(*shape, device="cuda", dtype=dtype))
    q = make(batch, seqlen_q, heads, head_dim)
    k, v = make(batch, seqlen_k, heads_kv, head_dim), make(batch, seqlen_k, heads_kv, head_dim)
    opts = options(head_dim, causal)
    out = torch.full((batch, seqlen_q, heads, head_dim), math.nan, dtype=dtype, device="cuda")
    lse = torch.full((batch, heads, seqlen_q), math.nan, device="cuda")
    forward.forward(q, k, v, opts.softmax_scale, causal, out=out, lse=lse)
    torch.cuda.synchronize()
    ref_out, ref_lse = reference.attention(q.float(), k.float(), v.float(), opts)
    lowp_err = (low_precision(q, k, v, opts).float() - ref_out).abs().max().item()
    err = (out.float() - ref_out).abs().max().item()
    assert not out.isnan().any(), "unwritten or NaN output"
    assert err <= 2 * lowp_err + 1e-5, f"max error {err} vs PyTorch's {lowp_err} in {dtype}"
    finite = torch.isfinite(ref_lse)
    assert torch.equal(torch.isfinite(lse), finite) and torch.isneginf(lse[~finite]).all()
    assert (lse[finite] - ref_lse[finite]).abs().max().item() <= 1e-3 if finite.any() else True
    return out, lse


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("head_dim", [64, 96, 128])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("seqlen_q,seqlen_k", [(1, 1), (17, 17), (113, 113), (128, 128), (1000, 1000),
                                               (113, 4097), (4097, 113), (1, 300), (300, 1)])
def test_forward(dtype, head_dim, causal, seqlen_q, seqlen_k):
    check(2, seqlen_q, seqlen_k, 4, 4, head_dim, causal, dtype)


@pytest.mark.parametrize("heads,heads_kv", [(6, 2), (8, 1)])
@pytest.mark.parametrize("causal", [False, True])
def test_gqa_mqa(heads, heads_kv, causal):
    check(2, 257, 300, heads, heads_kv, 128, causal, torch.bfloat16)


def test_long_sequence():
    check(1, 4097, 4097, 2, 2, 128, True, torch.bfloat16)


def test_non_contiguous_inputs():
    def sliced(*shape):  # every other head of a wider tensor, and a padded head dim
        b, s, h, d = shape
        return torch.randn(b, s, 2 * h, d + 8, device="cuda", dtype=torch.bfloat16)[:, :, ::2, :d]
    check(2, 200, 333, 4, 4, 64, True, torch.bfloat16, make=sliced)


def test_rows_that_see_no_key():
    out, lse = check(1, 300, 100, 2, 2, 64, True, torch.bfloat16)
    assert torch.equal(out[:, :200], torch.zeros_like(out[:, :200]))
    assert torch.isneginf(lse[:, :, :200]).all()


def test_through_the_public_entry():
    q, k, v = (torch.randn(2, 333, 4, 128, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    out, lse = cuteattn.flash_attn_func(q, k, v, causal=True, return_lse=True)
    ref, ref_lse = reference.attention(q.float(), k.float(), v.float(), options(128, True))
    assert (out.float() - ref).abs().max().item() < 2e-2
    torch.testing.assert_close(lse, ref_lse, atol=1e-3, rtol=1e-3)
    with pytest.raises(NotImplementedError, match="sliding window"):
        cuteattn.flash_attn_func(q, k, v, window_size=(64, 0))
    with pytest.raises(NotImplementedError, match="backward has no kernel yet for sm90"):
        cuteattn.flash_attn_func(q.requires_grad_(), k, v).sum().backward()
