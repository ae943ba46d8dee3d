"""Bad input gets an error naming the argument, what was given and what is allowed."""

import contextlib

import pytest
import torch
from torch.nn.attention.flex_attention import create_block_mask

import cuteattn
from cuteattn import interface


def qkv(batch=2, seqlen=16, heads_q=4, heads_kv=2, head_dim=32, head_dim_v=None, dtype=torch.float16):
    return (torch.randn(batch, seqlen, heads_q, head_dim, dtype=dtype),
            torch.randn(batch, seqlen, heads_kv, head_dim, dtype=dtype),
            torch.randn(batch, seqlen, heads_kv, head_dim_v or head_dim, dtype=dtype))


@contextlib.contextmanager
def expect(error, *fragments):
    """pytest.raises, and the message must contain every fragment."""
    with pytest.raises(error) as info:
        yield
    for fragment in fragments:
        assert fragment in str(info.value), f"{fragment!r} not in {str(info.value)!r}"


def test_not_a_tensor():
    q, k, v = qkv()
    with expect(TypeError, "k must be a torch.Tensor", "list"):
        cuteattn.flash_attn_func(q, [1], v)


def test_rank():
    q, k, v = qkv()
    with expect(ValueError, "q must have 4 dimensions", "(16, 4, 32)"):
        cuteattn.flash_attn_func(q[0], k, v)


def test_dtype():
    q, k, v = qkv(dtype=torch.float64)
    with expect(TypeError, "q has dtype torch.float64", "torch.bfloat16"):
        cuteattn.flash_attn_func(q, k, v)


def test_dtypes_must_match():
    q, k, v = qkv()
    with expect(TypeError, "v has dtype torch.bfloat16", "must match q's dtype, torch.float16"):
        cuteattn.flash_attn_func(q, k, v.bfloat16())


def test_batch_and_seqlen_mismatch():
    q, k, v = qkv()
    with expect(ValueError, "batch sizes 2, 1, 2"):
        cuteattn.flash_attn_func(q, k[:1], v)
    with expect(ValueError, "k has seqlen 16 and v has 15"):
        cuteattn.flash_attn_func(q, k, v[:, :15])


def test_heads():
    q, k, v = qkv(heads_q=6, heads_kv=4)
    with expect(ValueError, "q has 6 heads and k has 4", "multiple of heads_kv"):
        cuteattn.flash_attn_func(q, k, v)
    q, k, v = qkv()
    with expect(ValueError, "v has 1 heads and k has 2"):
        cuteattn.flash_attn_func(q, k, v[:, :, :1])


@pytest.mark.parametrize("head_dim,head_dim_v,name", [(36, 36, "head_dim"), (512, 512, "head_dim"),
                                                      (32, 12, "head_dim_v")])
def test_head_dims(head_dim, head_dim_v, name):
    q, k, v = qkv(head_dim=head_dim, head_dim_v=head_dim_v)
    with expect(ValueError, f"({name}) is", "multiple of 8 from 8 to 256"):
        cuteattn.flash_attn_func(q, k, v)


def test_q_and_k_head_dims_differ():
    q, k, v = qkv()
    with expect(ValueError, "k has head_dim 16 and q has 32"):
        cuteattn.flash_attn_func(q, k[..., :16].contiguous(), v)


def test_last_dim_stride():
    q, k, v = qkv()
    with expect(ValueError, "k must have stride 1 in its last dimension"):
        cuteattn.flash_attn_func(q, k.transpose(-1, -2).contiguous().transpose(-1, -2), v)


def test_alignment():
    q, k, v = qkv()
    unaligned = torch.randn(2 * 16 * 4 * 32 + 1, dtype=torch.float16)[1:].view(2, 16, 4, 32)
    with expect(ValueError, "q must start on a 16-byte boundary", "data_ptr % 16 = 2"):
        cuteattn.flash_attn_func(unaligned, k, v)
    odd_stride = torch.randn(2, 16, 4, 36, dtype=torch.float16)[..., :32]
    with expect(ValueError, "strides that are multiples of 8 elements", "(2304, 144, 36, 1)"):
        cuteattn.flash_attn_func(odd_stride, k, v)


def test_non_contiguous_but_aligned_is_fine():
    q, k, v = qkv(dtype=torch.float32)
    wide = torch.randn(2, 16, 8, 32)
    cuteattn.flash_attn_func(wide[:, :, ::2], k, v)


@pytest.mark.parametrize("window,fragment", [((-1, None), "window_size left"), ((None, 2.5), "window_size right"),
                                             ((3,), "pair (left, right)")])
def test_window(window, fragment):
    q, k, v = qkv()
    with expect((ValueError, TypeError), fragment):
        cuteattn.flash_attn_func(q, k, v, window_size=window)


@pytest.mark.parametrize("softcap", [-1.0, float("inf"), "2"])
def test_softcap(softcap):
    q, k, v = qkv()
    with expect(ValueError, "softcap must be a finite float >= 0", repr(softcap)):
        cuteattn.flash_attn_func(q, k, v, softcap=softcap)


def test_flags_and_hints():
    q, k, v = qkv()
    with expect(TypeError, "causal must be a bool", "1"):
        cuteattn.flash_attn_func(q, k, v, causal=1)
    with expect(TypeError, "softmax_scale must be None or a finite float"):
        cuteattn.flash_attn_func(q, k, v, softmax_scale=float("nan"))
    with expect(ValueError, "num_splits must be an int >= 0", "-2"):
        cuteattn.flash_attn_func(q, k, v, num_splits=-2)
    with expect(TypeError, "pack_gqa must be None or a bool"):
        cuteattn.flash_attn_func(q, k, v, pack_gqa="yes")


def test_learnable_sink_shape_and_device():
    q, k, v = qkv()
    with expect(ValueError, "learnable_sink has shape (3,)", "(heads_q,) = (4,)"):
        cuteattn.flash_attn_func(q, k, v, learnable_sink=torch.zeros(3))
    with expect(TypeError, "learnable_sink has dtype torch.int64"):
        cuteattn.flash_attn_func(q, k, v, learnable_sink=torch.zeros(4, dtype=torch.int64))
    with expect(ValueError, "learnable_sink is on meta", "q's device, cpu"):
        cuteattn.flash_attn_func(q, k, v, learnable_sink=torch.zeros(4, device="meta"))


def test_k_on_another_device():
    q, k, v = qkv()
    with expect(ValueError, "k is on meta", "q's device, cpu"):
        cuteattn.flash_attn_func(q, k.to("meta"), v)


def test_mods_must_be_callable_and_return_the_right_type():
    q, k, v = qkv(dtype=torch.float32)
    with expect(TypeError, "score_mod must be None or a callable", "int"):
        cuteattn.flash_attn_func(q, k, v, score_mod=3)
    with expect(TypeError, "score_mod must return a floating-point tensor", "torch.int64"):
        cuteattn.flash_attn_func(q, k, v, score_mod=lambda s, b, h, i, j: i - j)
    with expect(TypeError, "mask_mod must return a bool tensor", "bool"):
        cuteattn.flash_attn_func(q, k, v, mask_mod=lambda b, h, i, j: True)
    with expect(TypeError, "mask_mod must return a bool tensor", "torch.int64"):
        cuteattn.flash_attn_func(q, k, v, mask_mod=lambda b, h, i, j: i - j)
    with expect(TypeError, "score_mod returned shape (3,)"):
        cuteattn.flash_attn_func(q, k, v, score_mod=lambda s, b, h, i, j: torch.zeros(3))


def test_block_mask():
    q, k, v = qkv(dtype=torch.float32)
    with expect(TypeError, "block_mask must be a torch.nn.attention.flex_attention.BlockMask", "Tensor"):
        cuteattn.flash_attn_func(q, k, v, block_mask=torch.ones(1))
    wrong = create_block_mask(lambda b, h, i, j: i >= j, None, None, 32, 16, device="cpu")
    with expect(ValueError, "block_mask was made for (seqlen_q, seqlen_k) = (32, 16)", "(16, 16)"):
        cuteattn.flash_attn_func(q, k, v, block_mask=wrong)
    three_batches = create_block_mask(lambda b, h, i, j: i >= j, 3, None, 16, 16, device="cpu")
    with expect(ValueError, "block_mask has (batch, heads) = (3, 1)"):
        cuteattn.flash_attn_func(q, k, v, block_mask=three_batches)


def test_backend_environment_variable(monkeypatch):
    q, k, v = qkv()
    monkeypatch.setenv("CUTEATTN_BACKEND", "triton")
    with expect(ValueError, "CUTEATTN_BACKEND is 'triton'", "auto, reference"):
        cuteattn.flash_attn_func(q, k, v)


def test_arch_for_capability():
    assert [interface.arch_for_capability(c) for c in ((8, 0), (8, 6), (8, 9), (9, 0), (10, 0), (10, 3))] == \
        ["sm80", "sm80", "sm80", "sm90", "sm100", "sm100"]
    with expect(NotImplementedError, "compute capability 7.5", "CUTEATTN_BACKEND=reference"):
        interface.arch_for_capability((7, 5))


# varlen

def packed(lengths=(5, 7), heads=4, head_dim=32):
    return torch.randn(sum(lengths), heads, head_dim, dtype=torch.float16)


def cu(lengths, dtype=torch.int32):
    return torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=dtype)


def test_cu_seqlens_dtype_length_order():
    q, k, v = packed(), packed(heads=2), packed(heads=2)
    with expect(TypeError, "cu_seqlens_q has dtype torch.int64", "torch.int32"):
        cuteattn.flash_attn_varlen_func(q, k, v, cu((5, 7), torch.int64), cu((5, 7)))
    with expect(ValueError, "cu_seqlens_k has length 4", "must be 3"):
        cuteattn.flash_attn_varlen_func(q, k, v, cu((5, 7)), cu((5, 4, 3)))
    with expect(ValueError, "cu_seqlens_q must be non-decreasing", "[0, 7, 5]"):
        cuteattn.flash_attn_varlen_func(q, k, v, torch.tensor([0, 7, 5], dtype=torch.int32), cu((5, 7)))
    with expect(ValueError, "cu_seqlens_k ends at 13", "past the 12 tokens"):
        cuteattn.flash_attn_varlen_func(q, k, v, cu((5, 7)), cu((5, 8)))
    with expect(ValueError, "cu_seqlens_q is on meta"):
        cuteattn.flash_attn_varlen_func(q, k, v, cu((5, 7)).to("meta"), cu((5, 7)))


def test_varlen_ranks_and_max_seqlen():
    q, k, v = packed(), packed(heads=2), packed(heads=2)
    with expect(ValueError, "q must have 3 dimensions"):
        cuteattn.flash_attn_varlen_func(q[None], k, v, cu((5, 7)), cu((5, 7)))
    with expect(ValueError, "max_seqlen_k is 6", "longest sequence has 7"):
        cuteattn.flash_attn_varlen_func(q, k, v, cu((5, 7)), cu((5, 7)), 7, 6)
    with expect(ValueError, "seqused_q[1] is 8", "0 to 7"):
        cuteattn.flash_attn_varlen_func(q, k, v, cu((5, 7)), cu((5, 7)),
                                        seqused_q=torch.tensor([5, 8], dtype=torch.int32))
    with expect(ValueError, "block_mask is not supported with variable-length sequences"):
        cuteattn.flash_attn_varlen_func(q, k, v, cu((5, 7)), cu((5, 7)), block_mask=object())


def test_page_table():
    q = torch.randn(2, 1, 4, 32, dtype=torch.float16)
    k_cache = torch.randn(6, 8, 2, 32, dtype=torch.float16)
    used = torch.tensor([8, 16], dtype=torch.int32)
    table = torch.tensor([[0, 1], [2, 3]], dtype=torch.int32)
    with expect(ValueError, "page_table must be int32 of shape (batch, max_pages) = (2, ...)", "torch.int64"):
        cuteattn.flash_attn_varlen_func(q, k_cache, k_cache, seqused_k=used, page_table=table.long())
    with expect(ValueError, "page indices outside [0, 6)"):
        cuteattn.flash_attn_varlen_func(q, k_cache, k_cache, seqused_k=used, page_table=table + 4)
    with expect(ValueError, "seqused_k[1] is 17", "0 to 16"):
        cuteattn.flash_attn_varlen_func(q, k_cache, k_cache, seqused_k=used + 1, page_table=table)
    with expect(ValueError, "give the key lengths as seqused_k"):
        cuteattn.flash_attn_varlen_func(q, k_cache, k_cache, page_table=table)
