"""The sm90 backward preprocess kernel against the PyTorch reference."""

import pytest
import torch

from cuteattn import compile_cache
from cuteattn.reference import bwd_preprocess as reference

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

DTYPES = [torch.bfloat16, torch.float16]


def make_inputs(batch, seqlen, heads, head_dim_v, dtype, seed=0):
    """out and dout as head slices of larger tensors (non-contiguous), dout also seqlen-major
    transposed; lse with about a quarter of its rows -inf."""
    gen = torch.Generator(device="cuda").manual_seed(seed)
    out = torch.randn(batch, seqlen, heads + 2, head_dim_v, device="cuda", generator=gen).to(dtype)[:, :, 1:-1]
    dout = torch.randn(batch, heads + 1, seqlen, head_dim_v, device="cuda", generator=gen).to(dtype)
    dout = dout.transpose(1, 2)[:, :, 1:]
    lse = torch.randn(batch, heads, seqlen, device="cuda", generator=gen) * 4
    lse[torch.rand(batch, heads, seqlen, device="cuda", generator=gen) < 0.25] = -torch.inf
    return out, dout, lse


def check(out, dout, lse, dpsum, lse_log2):
    ref_dpsum, ref_lse_log2 = reference(out, dout, lse)
    assert dpsum.shape == ref_dpsum.shape and dpsum.dtype == torch.float32 and dpsum.is_contiguous()
    assert lse_log2.shape == ref_lse_log2.shape and lse_log2.dtype == torch.float32
    assert not dpsum.isnan().any() and not lse_log2.isnan().any()
    scale = (dout.float() * out.float()).abs().sum(dim=-1).transpose(1, 2)
    err = (dpsum - ref_dpsum).abs()
    assert (err <= 1e-5 * scale).all(), f"dpsum off by up to {(err / scale).max().item():.3g} of sum|dO*O|"
    torch.testing.assert_close(lse_log2, ref_lse_log2, rtol=1e-6, atol=0)
    assert (lse_log2[lse == -torch.inf] == 0).all()


@pytest.mark.parametrize("seqlen", [1, 17, 113, 4097])
@pytest.mark.parametrize("head_dim_v", [64, 96, 128, 192, 256])
@pytest.mark.parametrize("dtype", DTYPES)
def test_bwd_preprocess(dtype, head_dim_v, seqlen):
    from cuteattn.sm90.bwd_preprocess import bwd_preprocess

    out, dout, lse = make_inputs(2, seqlen, 3, head_dim_v, dtype)
    assert not out.is_contiguous() and not dout.is_contiguous()
    check(out, dout, lse, *bwd_preprocess(out, dout, lse))


@pytest.mark.parametrize("head_dim_v", [8, 40, 72, 248])
@pytest.mark.parametrize("dtype", DTYPES)
def test_one_thread_per_row(dtype, head_dim_v):
    """head_dim_v / 8 odd: every row is read by one thread."""
    from cuteattn.sm90.bwd_preprocess import bwd_preprocess

    out, dout, lse = make_inputs(3, 131, 2, head_dim_v, dtype)
    check(out, dout, lse, *bwd_preprocess(out, dout, lse))


@pytest.mark.parametrize("dtype", DTYPES)
def test_writes_every_element(dtype):
    from cuteattn.sm90.bwd_preprocess import bwd_preprocess

    out, dout, lse = make_inputs(2, 113, 4, 128, dtype)
    dpsum = torch.full_like(lse, torch.nan)
    lse_log2 = torch.full_like(lse, torch.nan)
    result = bwd_preprocess(out, dout, lse, dpsum=dpsum, lse_log2=lse_log2)
    assert result[0] is dpsum and result[1] is lse_log2
    check(out, dout, lse, dpsum, lse_log2)


def test_non_contiguous_lse_and_side_stream():
    from cuteattn.sm90.bwd_preprocess import bwd_preprocess

    out, dout, _ = make_inputs(2, 300, 3, 64, torch.bfloat16)
    lse = torch.randn(2, 300, 3, device="cuda").transpose(1, 2)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        dpsum, lse_log2 = bwd_preprocess(out, dout, lse)
    stream.synchronize()
    check(out, dout, lse, dpsum, lse_log2)


def test_one_compile_serves_every_shape():
    from cuteattn.sm90.bwd_preprocess import bwd_preprocess

    bwd_preprocess(*make_inputs(1, 5, 1, 192, torch.float16))
    compiled = compile_cache.cache_size()
    for batch, seqlen, heads in [(1, 1, 1), (3, 17, 5), (2, 4097, 2), (7, 113, 1)]:
        out, dout, lse = make_inputs(batch, seqlen, heads, 192, torch.float16, seed=seqlen)
        check(out, dout, lse, *bwd_preprocess(out, dout, lse))
    assert compile_cache.cache_size() == compiled


@pytest.mark.parametrize("seqlen", [1, 17, 113, 1000])
@pytest.mark.parametrize("tile_m", [64, 80])
@pytest.mark.parametrize("head_dim,head_dim_v", [(64, 64), (128, 128), (192, 128)])
def test_zeroes_dq_workspace(head_dim, head_dim_v, tile_m, seqlen):
    """The backward's dQ workspace (head_dim of q, out has head_dim_v), poisoned with NaN, comes back all zeros,
    also where its padded rows are no multiple of the preprocess's 64 (backward tile_m 80), and the floats past
    it untouched."""
    from cuteattn.sm90.bwd_preprocess import bwd_preprocess

    batch, heads = 2, 3
    out, dout, lse = make_inputs(batch, seqlen, heads, head_dim_v, torch.bfloat16)
    m_blocks = (seqlen + tile_m - 1) // tile_m
    dpsum, lse_log2 = (torch.full((batch, heads, m_blocks * tile_m), torch.nan, device="cuda") for _ in range(2))
    size = batch * heads * m_blocks * tile_m * head_dim
    poisoned = torch.full((size + 1024,), torch.nan, device="cuda")
    dq_accum = poisoned[:size].view(batch, heads, m_blocks, tile_m * head_dim)
    bwd_preprocess(out, dout, lse, dpsum, lse_log2, dq_accum)
    assert (dq_accum == 0).all(), f"{dq_accum.isnan().sum().item()} floats of the workspace not zeroed"
    assert poisoned[size:].isnan().all(), "the preprocess wrote past the workspace"
    check(out, dout, lse, dpsum[..., :seqlen].contiguous(), lse_log2[..., :seqlen].contiguous())
    assert (dpsum[..., seqlen:] == 0).all() and (lse_log2[..., seqlen:] == 0).all()
