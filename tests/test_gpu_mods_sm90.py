"""score_mod and mask_mod compiled into the sm90 kernels, against the PyTorch path: the gallery of
`examples/gallery.py`, then the lowering of individual ops."""

import math
import pathlib
import sys

import pytest
import torch

import cuteattn
from cuteattn import reference
from cuteattn.tile_scheduler import by_work

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "examples"))
from gallery import gallery  # noqa: E402
from test_gpu_fwd_sm90 import assert_matches, grid, low_precision  # noqa: E402

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.get_device_capability()[0] != 9,
                       reason="needs an sm90 GPU"),
]

NAMES = list(gallery(1, 1, 1, 1, device="cpu"))


def options(head_dim, score_mod=None, mask_mod=None, causal=False, window=(None, None), softcap=0.0, sink=None,
            block_mask=None):
    return reference.Options(softmax_scale=1 / math.sqrt(head_dim), window_left=window[0],
                             window_right=0 if causal else window[1], softcap=softcap, learnable_sink=sink,
                             score_mod=score_mod, mask_mod=mask_mod, block_mask=block_mask)


def check_forward(batch, seqlen_q, seqlen_k, heads, heads_kv, head_dim, opts, dtype=torch.bfloat16, config=None):
    from cuteattn.mods import block_mask
    from cuteattn.sm90 import forward

    q = torch.randn(batch, seqlen_q, heads, head_dim, device="cuda", dtype=dtype)
    k, v = (torch.randn(batch, seqlen_k, heads_kv, head_dim, device="cuda", dtype=dtype) for _ in range(2))
    out = torch.full_like(q, math.nan)
    lse = torch.full((batch, heads, seqlen_q), math.nan, device="cuda")
    forward.forward(q, k, v, block_mask.fold(opts, q.device), config=config, out=out, lse=lse)
    torch.cuda.synchronize()
    assert_matches(out, lse, q, k, v, opts)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("seqlen_q,seqlen_k", [(1, 1), (113, 113), (1000, 1000), (113, 4097), (300, 17)])
def test_gallery_forward(name, seqlen_q, seqlen_k):
    score_mod, mask_mod = gallery(2, 4, seqlen_q, seqlen_k)[name]
    check_forward(2, seqlen_q, seqlen_k, 4, 4, 128, options(128, score_mod, mask_mod))


@pytest.mark.parametrize("head_dim", [64, 96, 192, 256])
def test_gallery_head_dims(head_dim):
    score_mod, mask_mod = gallery(2, 4, 500, 500)["rel_bias_document"]
    check_forward(2, 500, 500, 4, 4, head_dim, options(head_dim, score_mod, mask_mod))


@pytest.mark.parametrize("name", ["alibi", "document", "rel_bias_document"])
def test_mods_compose_with_features(name):
    score_mod, mask_mod = gallery(2, 8, 700, 900)[name]
    sink = torch.randn(8, device="cuda")
    opts = options(128, score_mod, mask_mod, causal=True, window=(300, None), softcap=30.0, sink=sink)
    check_forward(2, 700, 900, 8, 2, 128, opts)


@pytest.mark.parametrize("name", ["alibi", "document", "rel_bias_document"])
def test_claimed_tiles_with_mods(name):
    """A persistent grid that claims its tiles, under mods: with a mask_mod the claimed tickets index the block
    lists' longest-first order (`by_work`). 6 batches x 8 heads x 8 blocks of 1000 rows: 384 tiles."""
    from cuteattn.sm90.fwd_config import FwdConfig

    score_mod, mask_mod = gallery(6, 8, 1000, 1000)[name]
    check_forward(6, 1000, 1000, 8, 2, 128, options(128, score_mod, mask_mod),
                  config=FwdConfig(persistent=True, dynamic=True))


def check_backward(batch, seqlen_q, seqlen_k, heads, heads_kv, head_dim, name, causal=False, window=(None, None),
                   softcap=0.0, dtype=torch.bfloat16):
    """loss.backward() through flash_attn_func with the gallery's mods `name` (or a pair (score_mod, mask_mod)):
    dq, dk, dv and the gradients of the captured tensors that require grad, against the fp32 PyTorch path."""
    from cuteattn.mods.trace import trace_score_mod

    score_mod, mask_mod = name if isinstance(name, tuple) else gallery(batch, heads, seqlen_q, seqlen_k,
                                                                       requires_grad=True)[name]
    traced = trace_score_mod(score_mod) if score_mod is not None else None
    captured = [traced.captured[i] for i in traced.grads_of] if traced is not None else []
    q = torch.randn(batch, seqlen_q, heads, head_dim, device="cuda", dtype=dtype)
    k, v = (torch.randn(batch, seqlen_k, heads_kv, head_dim, device="cuda", dtype=dtype) for _ in range(2))
    dout = torch.randn_like(q)
    opts = options(head_dim, score_mod, mask_mod, causal=causal, window=window, softcap=softcap)

    def grads(fn, inputs):
        leaves = [t.detach().clone().requires_grad_() for t in inputs]
        out = fn(*leaves)
        return torch.autograd.grad(out, leaves + captured, dout.to(out.dtype))

    got = grads(lambda q_, k_, v_: cuteattn.flash_attn_func(q_, k_, v_, causal=causal, window_size=window,
                                                            softcap=softcap, score_mod=score_mod, mask_mod=mask_mod),
                (q, k, v))
    want = grads(lambda q_, k_, v_: reference.attention(q_, k_, v_, opts)[0], (q.float(), k.float(), v.float()))
    low = grads(lambda q_, k_, v_: low_precision(q_, k_, v_, opts), (q, k, v))
    names = ["dq", "dk", "dv"] + [f"d captured {i}" for i in range(len(captured))]
    for label, g, w, lo in zip(names, got, want, low):
        assert not g.isnan().any(), f"{label}: NaN gradient"
        err = (g.float() - w).abs().max().item()
        lowp_err = (lo.float() - w).abs().max().item()
        # A captured tensor's gradient sums many scores' terms, each from the stored (rounded) output: allow
        # that rounding, 1% of the largest gradient, as for the sink.
        slack = 1e-2 * w.abs().max().item() if label.startswith("d captured") else 0.0
        assert err <= 2 * lowp_err + 1e-4 + slack, f"{label}: max error {err} vs PyTorch's {lowp_err} in {dtype}"


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("seqlen_q,seqlen_k", [(113, 113), (1000, 1000), (300, 17)])
def test_gallery_backward(name, seqlen_q, seqlen_k):
    check_backward(2, seqlen_q, seqlen_k, 4, 4, 128, name)


@pytest.mark.parametrize("head_dim", [64, 192, 256])
@pytest.mark.parametrize("seqlen_q,seqlen_k", [(17, 1000), (113, 300)])
def test_backward_strong_position_bias(head_dim, seqlen_q, seqlen_k):
    """A bias that grows with kv_idx - q_idx: at the padding queries past seqlen_q (whose lse is 0) the scores
    overflow exp2 (2 * 983 in log2 units at hdim 64) and would turn their zero dO into NaN in dV, unless the
    kernel masks them."""
    def toward_later_keys(score, b, h, q_idx, kv_idx):
        return score + (kv_idx - q_idx) * 2.0
    check_backward(2, seqlen_q, seqlen_k, 4, 2, head_dim, (toward_later_keys, None))


@pytest.mark.parametrize("head_dim", [64, 192, 256])
def test_gallery_backward_head_dims(head_dim):
    check_backward(2, 500, 500, 4, 2, head_dim, "rel_bias_document")


@pytest.mark.parametrize("name", ["alibi", "rel_bias", "per_head_scale", "document", "tanh_softcap"])
def test_backward_mods_compose_with_features(name):
    check_backward(2, 700, 900, 8, 2, 64, name, causal=True, window=(300, None), softcap=30.0)


OP_MODS = {
    "arithmetic": lambda s, b, h, q, kv: (s * 0.5 - 1.0) / 1.5 + (q - kv) * 0.01,
    "integer_division": lambda s, b, h, q, kv: s + ((q - kv) // 7).float() * 0.1 + ((q - kv) % 5).float() * 0.2,
    "truncating_division": lambda s, b, h, q, kv: s + torch.div(q - kv, 7, rounding_mode="trunc") * 0.1,
    "where_abs_sign": lambda s, b, h, q, kv: torch.where(q > kv, s.abs(), -s) + torch.sign((q - kv).float()) * 0.5,
    "min_max_clamp": lambda s, b, h, q, kv: torch.minimum(torch.maximum(s, s * 0.5), s.clamp(-2.0, 2.0) + 1.0),
    "transcendental": lambda s, b, h, q, kv: torch.exp(-s.abs()) + torch.log(s * s + 1) + torch.sigmoid(s)
    + torch.exp2(-s.abs()) + torch.sqrt(s.abs() + 1),
    "casts": lambda s, b, h, q, kv: s + ((q - kv).float() * 0.5).to(torch.int32) * 0.1 + (q > kv).float(),
    "logical": lambda s, b, h, q, kv: torch.where(torch.logical_and(q % 2 == 0, ~(kv % 3 == 0)) | (h == 1), s, s - 1),
}


@pytest.mark.parametrize("name", list(OP_MODS))
def test_op_lowering(name):
    check_forward(2, 200, 333, 4, 4, 64, options(64, score_mod=OP_MODS[name]))


def grads_against_reference(q, k, v, opts, **kwargs):
    """(out, ref, grads, ref_grads): flash_attn_func(q, k, v, **kwargs) and the fp32 PyTorch path under `opts`,
    with their gradients of q, k, v for one random dout."""
    out = cuteattn.flash_attn_func(q, k, v, **kwargs)
    dout = torch.randn_like(out)
    got = torch.autograd.grad(out, (q, k, v), dout)
    leaves = [t.detach().float().requires_grad_() for t in (q, k, v)]
    ref = reference.attention(*leaves, opts)[0]
    return out, ref, got, torch.autograd.grad(ref, leaves, dout.float())


def test_op_derivatives():
    """The backward of every op mod at once: their derivatives with respect to the score."""
    def all_ops(s, b, h, q, kv):
        return sum(mod(s, b, h, q, kv) for mod in OP_MODS.values()) * 0.1

    q, k, v = (torch.randn(2, 200, 4, 64, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    _, _, got, want = grads_against_reference(q, k, v, options(64, score_mod=all_ops), score_mod=all_ops)
    for g, w in zip(got, want):
        assert (g.float() - w).abs().max().item() <= 0.05 * w.abs().max().item()


def test_unsupported_op_names_the_line():
    q, k, v = (torch.randn(1, 64, 2, 64, device="cuda", dtype=torch.bfloat16) for _ in range(3))

    def erf_mod(score, b, h, q_idx, kv_idx):
        return torch.erf(score)

    with pytest.raises(TypeError, match=r"aten.erf.default.*return torch.erf\(score\)"):
        cuteattn.flash_attn_func(q, k, v, score_mod=erf_mod)
    with pytest.raises(TypeError, match="mask_mod must return a bool tensor"):
        cuteattn.flash_attn_func(q, k, v, mask_mod=lambda b, h, q_idx, kv_idx: q_idx - kv_idx)
    with pytest.raises(TypeError, match="one value per score"):
        table = torch.randn(2, 64, device="cuda")
        cuteattn.flash_attn_func(q, k, v, score_mod=lambda score, b, h, q_idx, kv_idx: score + table[h])
    with pytest.raises(ValueError, match="on cpu"):
        cpu_table = torch.randn(2, 64)
        cuteattn.flash_attn_func(q, k, v, score_mod=lambda score, b, h, q_idx, kv_idx: score + cpu_table[h, q_idx])


def test_strided_captured_tensor():
    table = torch.randn(64, 4, device="cuda").t()  # (4, 64), last stride 4
    check_forward(1, 64, 64, 4, 4, 64, options(64, score_mod=lambda s, b, h, q, kv: s + table[h, q]))


@pytest.mark.parametrize("head_dim", [64, 128])
def test_negative_indices_and_the_padding(head_dim):
    """A captured tensor indexed as torch does (a negative index counts from the end), by a score_mod that sees
    the padding's positions: their indices fall past the table and are clamped, their scores masked."""
    table = torch.randn(4, 128, device="cuda").requires_grad_()

    def wrapped_bias(score, b, h, q_idx, kv_idx):
        return score + table[h, (q_idx - kv_idx).clamp(-64, 63)]

    check_forward(2, 113, 300, 4, 4, head_dim, options(head_dim, score_mod=wrapped_bias))
    check_backward(2, 113, 300, 4, 2, head_dim, (wrapped_bias, None))


def test_equal_mods_share_a_kernel_and_constants_recompile():
    from cuteattn import compile_cache

    q, k, v = (torch.randn(1, 128, 2, 64, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    cuteattn.flash_attn_func(q, k, v, score_mod=lambda score, b, h, q_idx, kv_idx: score * 0.5)
    before = compile_cache.cache_size()
    out = cuteattn.flash_attn_func(q, k, v, score_mod=lambda score, b, h, q_idx, kv_idx: score * 0.5)
    assert compile_cache.cache_size() == before
    other = cuteattn.flash_attn_func(q, k, v, score_mod=lambda score, b, h, q_idx, kv_idx: score * 0.25)
    assert compile_cache.cache_size() == before + 1
    assert not torch.equal(out, other)


def dense_classes(mask_mod, window, batch, heads, seqlen_q, seqlen_k, tile_q, tile_k):
    """(some visible, some hidden, some cut) per tile, (batch, heads, m_blocks, n_blocks), from the dense mask;
    keys past seqlen_k count as hidden (rows past seqlen_q as neither); cut: the mask_mod hides a key the window
    shows."""
    b, h, i, j = grid(batch, heads, seqlen_q, seqlen_k, "cuda")
    kept = mask_mod(b, h, i, j).expand(batch, heads, seqlen_q, seqlen_k)
    shown = torch.ones_like(kept)
    if window[0] is not None:
        shown = shown & (j >= i + seqlen_k - seqlen_q - window[0]) & (j <= i + seqlen_k - seqlen_q + window[1])
    m_blocks, n_blocks = -(-seqlen_q // tile_q), -(-seqlen_k // tile_k)
    padded = torch.zeros(batch, heads, m_blocks * tile_q, n_blocks * tile_k, dtype=torch.bool, device="cuda")
    inside, cut = torch.zeros_like(padded), torch.zeros_like(padded)
    padded[..., :seqlen_q, :seqlen_k] = kept & shown
    cut[..., :seqlen_q, :seqlen_k] = shown & ~kept
    inside[..., :seqlen_q, :] = True
    tiles = (batch, heads, m_blocks, tile_q, n_blocks, tile_k)
    return tuple(t.view(tiles).any(dim=(3, 5)) for t in (padded, inside & ~padded, cut))


@pytest.mark.parametrize("name", ["causal", "document", "block_sparse", "empty_rows", "sliding_window"])
@pytest.mark.parametrize("window", [(None, None), (200, 0)])
def test_block_lists(name, window):
    """The forward's block lists against the classes of the dense mask, and their cache."""
    from cuteattn.mods import block_sparsity

    batch, heads, seqlen_q, seqlen_k, tile_q, tile_k = 2, 4, 300, 700, 128, 64
    m_blocks, n_blocks = -(-seqlen_q // tile_q), -(-seqlen_k // tile_k)
    _, mask_mod = gallery(batch, heads, seqlen_q, seqlen_k)[name]
    opts = options(128, mask_mod=mask_mod, window=window)
    count, blocks, order = block_sparsity.forward_lists(opts, batch, heads, seqlen_q, seqlen_k, tile_q, tile_k, 3,
                                                        torch.device("cuda"))
    assert block_sparsity.forward_lists(opts, batch, heads, seqlen_q, seqlen_k, tile_q, tile_k, 3,
                                        torch.device("cuda"))[1] is blocks
    assert order.tolist() == by_work(count[..., 0].cpu(), 3).tolist()
    some_visible, some_hidden, some_cut = dense_classes(mask_mod, window, batch, heads, seqlen_q, seqlen_k, tile_q,
                                                        tile_k)
    for bi in range(batch):
        for hi in range(heads):
            for m in range(m_blocks):
                # The partial blocks first, each class from the last key block down.
                listed = sorted(((int(some_hidden[bi, hi, m, n]), n) for n in range(n_blocks)
                                 if some_visible[bi, hi, m, n]), reverse=True)
                got = blocks[bi, hi, m, :count[bi, hi, m, 0]].tolist()
                assert got == [4 * n + 2 * int(some_cut[bi, hi, m, n]) + partial for partial, n in listed], (bi, hi, m)
                assert count[bi, hi, m, 1] == sum(partial for partial, _ in listed), (bi, hi, m)


@pytest.mark.parametrize("name", ["document", "block_sparse", "sliding_window"])
def test_backward_block_lists(name):
    """The backward's lists (per KV head and key block, over the group's heads) and dQ turns."""
    from cuteattn.mods import block_sparsity

    batch, heads, heads_kv, seqlen_q, seqlen_k, tile_q, tile_k = 2, 4, 2, 300, 700, 64, 128
    group, m_blocks, n_blocks = heads // heads_kv, -(-seqlen_q // tile_q), -(-seqlen_k // tile_k)
    _, mask_mod = gallery(batch, heads, seqlen_q, seqlen_k)[name]
    opts = options(128, mask_mod=mask_mod)
    count, blocks, turns, order = block_sparsity.backward_lists(opts, batch, heads, heads_kv, seqlen_q, seqlen_k,
                                                                tile_q, tile_k, 1, torch.device("cuda"))
    assert order.tolist() == by_work(count.cpu(), 1).tolist()
    visible, _, cut = dense_classes(mask_mod, (None, None), batch, heads, seqlen_q, seqlen_k, tile_q, tile_k)
    for bi in range(batch):
        for kv in range(heads_kv):
            for n in range(n_blocks):
                want = [(2 * (g * m_blocks + m) + int(cut[bi, kv * group + g, m, n]),
                         int(visible[bi, kv * group + g, m, :n].sum()))
                        for g in range(group) for m in range(m_blocks) if visible[bi, kv * group + g, m, n]]
                listed = count[bi, kv, n].item()
                got = list(zip(blocks[bi, kv, n, :listed].tolist(), turns[bi, kv, n, :listed].tolist()))
                assert got == want, (bi, kv, n)


@pytest.mark.parametrize("name", ["document", "rel_bias_document"])
def test_deterministic_backward_with_mask_mod(name):
    score_mod, mask_mod = gallery(2, 4, 700, 700)[name]
    q, k, v = (torch.randn(2, 700, h, 64, device="cuda", dtype=torch.bfloat16) for h in (4, 2, 2))
    dout = torch.randn_like(q)

    def grads():
        leaves = [t.detach().clone().requires_grad_() for t in (q, k, v)]
        out = cuteattn.flash_attn_func(*leaves, score_mod=score_mod, mask_mod=mask_mod, deterministic=True)
        return torch.autograd.grad(out, leaves, dout)

    runs = [grads() for _ in range(5)]
    for run in runs[1:]:
        for a, b in zip(runs[0], run):
            assert torch.equal(a, b)
    leaves = [t.detach().float().requires_grad_() for t in (q, k, v)]
    ref = reference.attention(*leaves, options(64, score_mod, mask_mod))[0]
    for got, want in zip(runs[0], torch.autograd.grad(ref, leaves, dout.float())):
        assert (got.float() - want).abs().max().item() <= 0.02 * want.abs().max().item()


def random_block_mask(batch, heads, seqlen_q, seqlen_k, block_size):
    """A BlockMask of random lists and no mask_mod: exactly the listed blocks are visible."""
    from torch.nn.attention.flex_attention import BlockMask

    block_q, block_kv = block_size
    m_blocks, n_blocks = -(-seqlen_q // block_q), -(-seqlen_k // block_kv)
    generator = torch.Generator().manual_seed(1)
    listed = torch.rand(batch, heads, m_blocks, n_blocks, generator=generator) < 0.5
    count = listed.sum(-1).int()
    indices = torch.argsort(~listed, dim=-1, stable=True).int()
    return BlockMask.from_kv_blocks(count.cuda(), indices.cuda(), BLOCK_SIZE=block_size,
                                    seq_lengths=(seqlen_q, seqlen_k))


@pytest.mark.parametrize("block_size", [(128, 128), (64, 64), (64, 256)])
@pytest.mark.parametrize("name", ["document", "sliding_window", "dilated", "random_lists"])
def test_block_mask(name, block_size):
    """block_mask= from create_block_mask at any BLOCK_SIZE (and a hand-made one), forward and backward."""
    from torch.nn.attention.flex_attention import create_block_mask

    batch, heads, seqlen = 2, 4, 700
    if name == "random_lists":
        mask = random_block_mask(batch, heads, seqlen, seqlen, block_size)
    else:
        _, mask_mod = gallery(batch, heads, seqlen, seqlen)[name]
        mask = create_block_mask(mask_mod, batch, heads, seqlen, seqlen, device="cuda", BLOCK_SIZE=block_size)
    check_forward(batch, seqlen, seqlen, heads, heads, 64, options(64, block_mask=mask))
    q, k, v = (torch.randn(batch, seqlen, heads, 64, device="cuda", dtype=torch.bfloat16, requires_grad=True)
               for _ in range(3))
    out, ref, got, want = grads_against_reference(q, k, v, options(64, block_mask=mask), block_mask=mask)
    assert (out.float() - ref).abs().max().item() < 2e-2
    for g, w in zip(got, want):
        assert (g.float() - w).abs().max().item() <= 0.02 * w.abs().max().item()
