"""Input checks of the public entry points: each error names the argument, what was given and what is allowed."""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Optional

import torch

KERNEL_DTYPES = (torch.float16, torch.bfloat16)
REFERENCE_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
MAX_HEAD_DIM = 256
HEAD_DIM_MULTIPLE = 8  # one 16-byte vector of fp16/bf16


def fail(fn: str, message: str, error=ValueError):
    raise error(f"cuteattn.{fn}: {message}")


def _names(dtypes) -> str:
    return ", ".join(str(d) for d in dtypes)


def check_tensor(fn: str, name: str, t, rank: int | tuple[int, ...], device: Optional[torch.device] = None):
    if not isinstance(t, torch.Tensor):
        fail(fn, f"{name} must be a torch.Tensor; got {type(t).__name__}", TypeError)
    ranks = (rank,) if isinstance(rank, int) else rank
    if t.dim() not in ranks:
        allowed = " or ".join(str(r) for r in ranks)
        fail(fn, f"{name} must have {allowed} dimensions; got shape {tuple(t.shape)}")
    if device is not None and t.device != device:
        fail(fn, f"{name} is on {t.device}; it must be on q's device, {device}")


def check_qkv_dtypes(fn: str, q, k, v, allowed):
    if q.dtype not in allowed:
        fail(fn, f"q has dtype {q.dtype}; allowed on {q.device.type}: {_names(allowed)}", TypeError)
    for name, t in (("k", k), ("v", v)):
        if t.dtype != q.dtype:
            fail(fn, f"{name} has dtype {t.dtype}; it must match q's dtype, {q.dtype}", TypeError)


def tma_compatible(t: torch.Tensor) -> bool:
    """Last dim contiguous, and every row starting on a 16-byte boundary (what TMA needs)."""
    if t.is_contiguous() and t.data_ptr() % 16 == 0 and t.shape[-1] * t.element_size() % 16 == 0:
        return True  # the common case, decided without walking the strides
    elems = 16 // t.element_size()
    return t.stride(-1) == 1 and t.data_ptr() % 16 == 0 and all(
        s % elems == 0 for s, n in zip(t.stride()[:-1], t.shape[:-1]) if n > 1)


def check_layout(fn: str, name: str, t: torch.Tensor):
    """`tma_compatible`, or an error that says what is wrong."""
    if tma_compatible(t):
        return
    if t.stride(-1) != 1:
        fail(fn, f"{name} must have stride 1 in its last dimension; got strides {t.stride()} "
                 f"(call .contiguous())")
    elems = 16 // t.element_size()
    if t.data_ptr() % 16 != 0 or any(s % elems != 0 for s, n in zip(t.stride()[:-1], t.shape[:-1]) if n > 1):
        fail(fn, f"{name} must start on a 16-byte boundary and have strides that are multiples of {elems} "
                 f"elements; got data_ptr % 16 = {t.data_ptr() % 16}, strides {t.stride()} (call .contiguous())")


def check_head_dims(fn: str, head_dim: int, head_dim_v: int):
    for name, d in (("q.shape[-1] (head_dim)", head_dim), ("v.shape[-1] (head_dim_v)", head_dim_v)):
        if d < 1 or d > MAX_HEAD_DIM or d % HEAD_DIM_MULTIPLE != 0:
            fail(fn, f"{name} is {d}; allowed: a multiple of {HEAD_DIM_MULTIPLE} from 8 to {MAX_HEAD_DIM}")


def check_heads(fn: str, heads_q: int, heads_kv: int, v_heads: int):
    if v_heads != heads_kv:
        fail(fn, f"v has {v_heads} heads and k has {heads_kv}; they must be equal")
    if heads_kv < 1 or heads_q % heads_kv != 0:
        fail(fn, f"q has {heads_q} heads and k has {heads_kv}; heads_q must be a multiple of heads_kv (GQA/MQA)")


def check_options(fn: str, *, softmax_scale, causal, window_size, softcap, deterministic, pack_gqa,
                  num_splits, return_lse, score_mod, mask_mod):
    if softmax_scale is not None and (not isinstance(softmax_scale, Real) or isinstance(softmax_scale, bool)
                                      or not math.isfinite(softmax_scale)):
        fail(fn, f"softmax_scale must be None or a finite float; got {softmax_scale!r}", TypeError)
    for name, flag in (("causal", causal), ("deterministic", deterministic), ("return_lse", return_lse)):
        if not isinstance(flag, bool):
            fail(fn, f"{name} must be a bool; got {flag!r}", TypeError)
    if pack_gqa is not None and not isinstance(pack_gqa, bool):
        fail(fn, f"pack_gqa must be None or a bool; got {pack_gqa!r}", TypeError)
    if not isinstance(window_size, (tuple, list)) or len(window_size) != 2:
        fail(fn, f"window_size must be a pair (left, right); got {window_size!r}", TypeError)
    for side, w in zip(("left", "right"), window_size):
        if w is not None and (not isinstance(w, Integral) or isinstance(w, bool) or w < 0):
            fail(fn, f"window_size {side} must be None (unbounded) or an int >= 0; got {w!r}")
    if not isinstance(softcap, Real) or isinstance(softcap, bool) or not math.isfinite(softcap) or softcap < 0:
        fail(fn, f"softcap must be a finite float >= 0 (0 disables it); got {softcap!r}")
    if not isinstance(num_splits, Integral) or isinstance(num_splits, bool) or num_splits < 0:
        fail(fn, f"num_splits must be an int >= 0 (0: cuteattn chooses, 1: no split); got {num_splits!r}")
    for name, mod in (("score_mod", score_mod), ("mask_mod", mask_mod)):
        if mod is not None and not callable(mod):
            fail(fn, f"{name} must be None or a callable; got {type(mod).__name__}", TypeError)


def check_sink(fn: str, sink, heads_q: int, device):
    if sink is None:
        return
    check_tensor(fn, "learnable_sink", sink, 1, device)
    if sink.shape[0] != heads_q:
        fail(fn, f"learnable_sink has shape {tuple(sink.shape)}; it must be (heads_q,) = ({heads_q},)")
    if not sink.is_floating_point():
        fail(fn, f"learnable_sink has dtype {sink.dtype}; allowed: a floating-point dtype", TypeError)


def check_block_mask(fn: str, block_mask, batch: int, heads_q: int, seqlen_q: int, seqlen_k: int):
    if block_mask is None:
        return
    from torch.nn.attention.flex_attention import BlockMask

    if not isinstance(block_mask, BlockMask):
        fail(fn, f"block_mask must be a torch.nn.attention.flex_attention.BlockMask; got "
                 f"{type(block_mask).__name__}", TypeError)
    if tuple(block_mask.seq_lengths) != (seqlen_q, seqlen_k):
        fail(fn, f"block_mask was made for (seqlen_q, seqlen_k) = {tuple(block_mask.seq_lengths)}; "
                 f"this call has ({seqlen_q}, {seqlen_k})")
    mask_batch, mask_heads = block_mask.kv_num_blocks.shape[:2]
    if mask_batch not in (1, batch) or mask_heads not in (1, heads_q):
        fail(fn, f"block_mask has (batch, heads) = ({mask_batch}, {mask_heads}); allowed: batch 1 or {batch}, "
                 f"heads 1 or {heads_q}")


def check_int32_vector(fn: str, name: str, t, length: int, device):
    check_tensor(fn, name, t, 1, device)
    if t.dtype != torch.int32:
        fail(fn, f"{name} has dtype {t.dtype}; it must be torch.int32", TypeError)
    if t.shape[0] != length:
        fail(fn, f"{name} has length {t.shape[0]}; it must be {length}")


def check_cu_seqlens(fn: str, name: str, cu, batch: int, total: int, device) -> list[int]:
    """cu_seqlens: int32, batch + 1 offsets, non-decreasing, ending within the tokens. Reads it on the host."""
    check_int32_vector(fn, name, cu, batch + 1, device)
    offsets = cu.tolist()
    if offsets[0] < 0 or any(b < a for a, b in zip(offsets, offsets[1:])):
        fail(fn, f"{name} must be non-decreasing offsets starting at >= 0; got {offsets[:8]}"
                 f"{' ...' if len(offsets) > 8 else ''}")
    if offsets[-1] > total:
        fail(fn, f"{name} ends at {offsets[-1]}, past the {total} tokens of the tensor it indexes")
    return offsets
