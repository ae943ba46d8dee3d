"""The public entry of cuteattn: input checks, the choice of backend and the call into it.

CPU tensors run the PyTorch path (`cuteattn.reference`). CUDA tensors run the CuTe DSL kernels of their
architecture: sm80/86/89 -> `cuteattn.sm80`, sm90 -> `cuteattn.sm90`, sm100 -> `cuteattn.sm100`. A
request that no kernel covers raises NotImplementedError naming the feature and the architecture; there
is never a silent fallback to the slow path on a GPU. `CUTEATTN_BACKEND=reference` forces the PyTorch
path on any device, for debugging.
"""

from __future__ import annotations

import functools
import math
import os
from typing import Callable, Optional

import torch

from cuteattn import checks, reference

BACKEND_ENV = "CUTEATTN_BACKEND"
# os.environ's own mapping, read by a plan's key on every call: a tenth of the time of os.environ.get, which encodes
# the name and decodes the value.
_ENVIRON, _BACKEND_KEY = os.environ._data, os.environ.encodekey(BACKEND_ENV)
BACKEND_CHOICES = ("auto", "reference")


def arch_for_capability(capability: tuple[int, int]) -> str:
    """The kernel family for a CUDA compute capability."""
    major, minor = capability
    family = {8: "sm80", 9: "sm90", 10: "sm100"}.get(major)
    if family is None:
        raise NotImplementedError(
            f"cuteattn has no kernels for compute capability {major}.{minor}; supported: 8.x (sm80), "
            f"9.0 (sm90), 10.x (sm100). Set {BACKEND_ENV}=reference to run the PyTorch path.")
    return family


def select_backend(fn: str, device: torch.device) -> str:
    """'reference', or the kernel family ('sm80', 'sm90', 'sm100') for a CUDA device."""
    choice = os.environ.get(BACKEND_ENV, "auto")
    if choice not in BACKEND_CHOICES:
        checks.fail(fn, f"environment variable {BACKEND_ENV} is {choice!r}; allowed: {', '.join(BACKEND_CHOICES)}")
    if choice == "reference" or device.type == "cpu":
        return "reference"
    if device.type != "cuda":
        checks.fail(fn, f"q is on a {device.type} device; allowed: cpu, cuda")
    return _arch_of_device(device.index if device.index is not None else torch.cuda.current_device())


@functools.lru_cache(maxsize=None)
def _arch_of_device(index: int) -> str:
    return arch_for_capability(torch.cuda.get_device_capability(index))


class _KernelAttention(torch.autograd.Function):
    """Attention through an architecture's forward and backward kernels; lse is returned but not
    differentiated."""

    @staticmethod
    def forward(ctx, q, k, v, learnable_sink, kernels, opts, hints, deterministic, *captured):
        # `captured`: score_mod's captured tensors that require grad, inputs so that autograd reaches them.
        out, lse = kernels.forward(q, k, v, opts, *hints)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.kernels, ctx.opts, ctx.deterministic = kernels, opts, deterministic
        ctx.mark_non_differentiable(lse)
        return out, lse

    @staticmethod
    def backward(ctx, dout, dlse):
        q, k, v, out, lse = ctx.saved_tensors
        dq, dk, dv, dsink, dcaptured = ctx.kernels.backward(q, k, v, out, dout, lse, ctx.opts,
                                                            deterministic=ctx.deterministic)
        return dq, dk, dv, dsink, None, None, None, None, *dcaptured


@functools.lru_cache(maxsize=None)
def _sm90_modules():
    """(forward, backward) of cuteattn.sm90, imported at the first GPU call (they import the CuTe DSL)."""
    from cuteattn.sm90 import backward, forward

    return forward, backward


class _Sm90:
    """The sm90 kernels behind `_KernelAttention`."""

    @staticmethod
    def prepared(q, k, v, opts, pack_gqa, num_splits):
        return _sm90_modules()[0].prepared(q, k, v, opts, pack_gqa, num_splits)

    @staticmethod
    def config_entry(head_dim):
        """The forward's configs of a head dim: a plan made under them is not used once one is replaced."""
        return _sm90_modules()[0].config_entry(head_dim)

    @staticmethod
    def unsupported(head_dim, head_dim_v, opts, needs_grad):
        forward, backward = _sm90_modules()
        missing = forward.unsupported(head_dim, head_dim_v, opts)
        if missing is None and needs_grad:
            missing = backward.unsupported(head_dim, head_dim_v, opts)
        return missing

    @staticmethod
    def forward(q, k, v, opts, pack_gqa, num_splits):
        return _sm90_modules()[0].forward(q, k, v, opts, pack_gqa=pack_gqa, num_splits=num_splits)

    @staticmethod
    def backward(q, k, v, out, dout, lse, opts, deterministic):
        return _sm90_modules()[1].backward(q, k, v, out, dout, lse, opts, deterministic=deterministic)


def _captured_with_grad(opts) -> list:
    """score_mod's captured tensors that require grad: inputs of the autograd Function, so autograd reaches them."""
    if opts.score_mod is None:
        return []
    from cuteattn import mods

    return mods.captured_with_grad(opts)


def _kernel_module(arch: str):
    """The kernels of an architecture, or None where there are none yet."""
    return _Sm90 if arch == "sm90" else None


def _no_kernel(fn: str, arch: str, feature: str, device: torch.device):
    name = torch.cuda.get_device_name(device)
    raise NotImplementedError(
        f"cuteattn.{fn}: {feature} has no {arch} kernel yet ({name}). Set {BACKEND_ENV}=reference to run "
        f"the PyTorch path instead (slow; for debugging).")


def _options(head_dim, softmax_scale, causal, window_size, softcap, learnable_sink, score_mod, mask_mod,
             block_mask) -> reference.Options:
    left, right = window_size
    if causal:
        right = 0
    return reference.Options(
        softmax_scale=1.0 / math.sqrt(head_dim) if softmax_scale is None else float(softmax_scale),
        window_left=None if left is None else int(left),
        window_right=None if right is None else int(right),
        softcap=float(softcap),
        learnable_sink=learnable_sink,
        score_mod=score_mod,
        mask_mod=mask_mod,
        block_mask=block_mask,
    )


def _check_common(fn, backend, q, k, v, learnable_sink, heads_q, head_dim_v, **options):
    allowed = checks.REFERENCE_DTYPES if backend == "reference" else checks.KERNEL_DTYPES
    checks.check_qkv_dtypes(fn, q, k, v, allowed)
    if k.shape[-1] != q.shape[-1]:
        checks.fail(fn, f"k has head_dim {k.shape[-1]} and q has {q.shape[-1]}; they must be equal")
    checks.check_heads(fn, heads_q, k.shape[-2], v.shape[-2])
    checks.check_head_dims(fn, q.shape[-1], head_dim_v)
    for name, t in (("q", q), ("k", k), ("v", v)):
        checks.check_layout(fn, name, t)
    checks.check_options(fn, **options)
    checks.check_sink(fn, learnable_sink, heads_q, q.device)


# Plans of calls already made: a call without mods, sink, block mask or gradient whose layouts and options
# match an earlier one (key: `_plan_key`) skips the checks and goes straight to the prepared launch.
_plans: dict = {}
PLANS_MAX = 1024


def _plan_key(q, k, v, softmax_scale, causal, window_size, softcap, learnable_sink, score_mod, mask_mod,
              block_mask, return_lse, deterministic, pack_gqa, num_splits) -> Optional[tuple]:
    """What decides a forward-only call's checks and launch, or None where the call cannot use a plan."""
    if learnable_sink is not None or score_mod is not None or mask_mod is not None or block_mask is not None:
        return None
    if not isinstance(q, torch.Tensor) or not isinstance(k, torch.Tensor) or not isinstance(v, torch.Tensor):
        return None
    if type(window_size) is not tuple or len(window_size) != 2:
        return None
    if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad):
        return None
    options = (softmax_scale, causal, *window_size, softcap, return_lse, deterministic, pack_gqa, num_splits)
    # The types too: a key must tell True from 1 and 1 from 1.0, which the checks treat differently.
    return (q.shape, k.shape, v.shape, q.stride(), k.stride(), v.stride(), q.dtype, k.dtype, v.dtype, q.device,
            k.device, v.device, q.data_ptr() % 16, k.data_ptr() % 16, v.data_ptr() % 16, options,
            tuple(map(type, options)), _ENVIRON.get(_BACKEND_KEY))


def _result(out: torch.Tensor, lse: torch.Tensor, dtype: torch.dtype, return_lse: bool):
    out = out.to(dtype)
    return (out, lse) if return_lse else out


def flash_attn_func(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    softmax_scale: Optional[float] = None,
    causal: bool = False,
    window_size: tuple[Optional[int], Optional[int]] = (None, None),
    softcap: float = 0.0,
    learnable_sink: Optional[torch.Tensor] = None,
    score_mod: Optional[Callable] = None,
    mask_mod: Optional[Callable] = None,
    block_mask=None,
    return_lse: bool = False,
    deterministic: bool = False,
    pack_gqa: Optional[bool] = None,
    num_splits: int = 0,
):
    """Attention over a batch of equal-length sequences, softmax(q k^T * scale) v, with autograd.

    Args:
        q: (batch, seqlen_q, heads_q, head_dim). k: (batch, seqlen_k, heads_kv, head_dim).
            v: (batch, seqlen_k, heads_kv, head_dim_v). fp16 or bf16 on a GPU (fp32 too on the PyTorch
            path), all one dtype; head dims multiples of 8 up to 256; heads_q a multiple of heads_kv
            (GQA/MQA: query head h reads KV head h // (heads_q // heads_kv)).
        softmax_scale: scale of q k^T; default 1 / sqrt(head_dim).
        causal: query i sees keys j <= i + seqlen_k - seqlen_q (aligned to the bottom right).
        window_size: (left, right): query i sees keys in [i + off - left, i + off + right],
            off = seqlen_k - seqlen_q; None is unbounded on that side. causal sets right to 0.
        softcap: if > 0, scores become softcap * tanh(score / softcap), before score_mod and masking.
        learnable_sink: (heads_q,) one logit per head, in units of the scaled scores, that joins each
            row's softmax denominator (it takes probability mass and contributes no value).
        score_mod: FlexAttention's `score_mod(score, b, h, q_idx, kv_idx) -> score`, applied to the
            scaled (and softcapped) score. It may read tensors it captures; gradients reach those that
            require grad.
        mask_mod: FlexAttention's `mask_mod(b, h, q_idx, kv_idx) -> bool`; False hides the key. One that
            reads only q_idx - kv_idx and shows a band of diagonals holding the bottom-right one (causal, a
            sliding window) runs as the kernels' window.
        block_mask: a `torch.nn.attention.flex_attention.BlockMask` (from `create_block_mask`), made for
            (seqlen_q, seqlen_k). Its own mask_mod applies inside its partial blocks; a `mask_mod`
            given here applies everywhere as well.
        return_lse: also return the log-sum-exp of each row's scaled scores (the sink included).
        deterministic: make the backward bitwise reproducible (kernels only; the PyTorch path always is).
        pack_gqa, num_splits: kernel scheduling hints (None and 0, the defaults: cuteattn chooses; num_splits=1
            never splits the keys). Packing never changes the result; a split merges partial sums in fp32, which
            changes it by rounding only, and splits are chosen by the launch's size (batch, heads): pass
            num_splits=1 for results that do not depend on the batch.

    Returns:
        out (batch, seqlen_q, heads_q, head_dim_v) in q's dtype, or `(out, lse)` with `return_lse=True`,
        lse (batch, heads_q, seqlen_q) fp32. A row that sees no key gets out = 0 and lse = -inf (lse = the
        sink's logit when there is a sink), never NaN, and zero gradients.
    """
    fn = "flash_attn_func"
    key = _plan_key(q, k, v, softmax_scale, causal, window_size, softcap, learnable_sink, score_mod, mask_mod,
                    block_mask, return_lse, deterministic, pack_gqa, num_splits)
    try:
        plan = _plans.get(key) if key is not None else None
    except TypeError:  # an unhashable option: the checks below name it
        key = plan = None
    if plan is not None and plan[0] == plan[1].config_entry(q.shape[-1]):  # identical entries compare at once
        out, lse = plan[2](q, k, v)
        return (out, lse) if return_lse else out
    for name, t in (("q", q), ("k", k), ("v", v)):
        checks.check_tensor(fn, name, t, 4, None if name == "q" else q.device)
    backend = select_backend(fn, q.device)
    batch, seqlen_q, heads_q, _ = q.shape
    if k.shape[0] != batch or v.shape[0] != batch:
        checks.fail(fn, f"q, k, v have batch sizes {q.shape[0]}, {k.shape[0]}, {v.shape[0]}; they must be equal")
    if v.shape[1] != k.shape[1]:
        checks.fail(fn, f"k has seqlen {k.shape[1]} and v has {v.shape[1]}; they must be equal")
    _check_common(fn, backend, q, k, v, learnable_sink, heads_q, v.shape[-1], softmax_scale=softmax_scale,
                  causal=causal, window_size=window_size, softcap=softcap, deterministic=deterministic,
                  pack_gqa=pack_gqa, num_splits=num_splits, return_lse=return_lse, score_mod=score_mod,
                  mask_mod=mask_mod)
    checks.check_block_mask(fn, block_mask, batch, heads_q, seqlen_q, k.shape[1])
    opts = _options(q.shape[-1], softmax_scale, causal, window_size, softcap, learnable_sink, score_mod,
                    mask_mod, block_mask)
    if backend == "reference":
        out, lse = reference.attention(q, k, v, opts)
        return _result(out, lse, q.dtype, return_lse)
    kernels = _kernel_module(backend)
    if kernels is None:
        _no_kernel(fn, backend, "the attention forward", q.device)
    captured = _captured_with_grad(opts)
    if opts.mask_mod is not None:
        from cuteattn.mods import band

        opts = band.as_window(opts, seqlen_q, k.shape[1])
    if opts.block_mask is not None:
        from cuteattn.mods import block_mask as folding

        opts = folding.fold(opts, q.device)
    inputs = (q, k, v, opts.learnable_sink)
    needs_grad = torch.is_grad_enabled() and (
        len(captured) > 0 or any(t is not None and t.requires_grad for t in inputs))
    missing = kernels.unsupported(q.shape[-1], v.shape[-1], opts, needs_grad)
    if missing is not None:
        _no_kernel(fn, backend, missing, q.device)
    if needs_grad:
        # The sink is an input of its own so that autograd reaches backward when only the sink needs a gradient.
        out, lse = _KernelAttention.apply(*inputs, kernels, opts, (pack_gqa, num_splits), deterministic, *captured)
    else:
        out, lse = kernels.forward(q, k, v, opts, pack_gqa, num_splits)
        if key is not None and out.numel() > 0 and k.shape[1] > 0:
            if len(_plans) >= PLANS_MAX:
                _plans.clear()
            _plans[key] = (kernels.config_entry(q.shape[-1]), kernels,
                           kernels.prepared(q, k, v, opts, pack_gqa, num_splits))
    return (out, lse) if return_lse else out


def flash_attn_varlen_func(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens_q: Optional[torch.Tensor] = None,
    cu_seqlens_k: Optional[torch.Tensor] = None,
    max_seqlen_q: Optional[int] = None,
    max_seqlen_k: Optional[int] = None,
    seqused_q: Optional[torch.Tensor] = None,
    seqused_k: Optional[torch.Tensor] = None,
    page_table: Optional[torch.Tensor] = None,
    softmax_scale: Optional[float] = None,
    causal: bool = False,
    window_size: tuple[Optional[int], Optional[int]] = (None, None),
    softcap: float = 0.0,
    learnable_sink: Optional[torch.Tensor] = None,
    score_mod: Optional[Callable] = None,
    mask_mod: Optional[Callable] = None,
    block_mask=None,
    return_lse: bool = False,
    deterministic: bool = False,
    pack_gqa: Optional[bool] = None,
    num_splits: int = 0,
):
    """Attention over sequences of different lengths packed along one token dimension.

    Args:
        q: (total_q, heads_q, head_dim) with `cu_seqlens_q`, or (batch, seqlen_q, heads_q, head_dim).
        k, v: (total_k, heads_kv, head_dim[_v]) with `cu_seqlens_k`; (num_pages, page_size, heads_kv,
            head_dim[_v]) with `page_table`; otherwise (batch, seqlen_k, heads_kv, head_dim[_v]).
        cu_seqlens_q, cu_seqlens_k: int32 (batch + 1,) offsets of each sequence, non-decreasing.
        max_seqlen_q, max_seqlen_k: the longest sequence, if known (checked when given).
        seqused_q, seqused_k: int32 (batch,): use only the first seqused tokens of each sequence. Query
            rows past them get out = 0 and lse = -inf.
        page_table: int32 (batch, max_pages): the pages of k and v that hold each sequence, in order.
            The sequence lengths then come from seqused_k, or else from cu_seqlens_k.
        The other options are those of `flash_attn_func`; the mods see b = the sequence's index and
        q_idx, kv_idx = positions within the sequence. block_mask is not supported here (use mask_mod).

    Returns:
        out in q's layout and dtype, or `(out, lse)` with `return_lse=True`: lse (heads_q, total_q) fp32
        with cu_seqlens_q (FlashAttention's varlen layout), else (batch, heads_q, seqlen_q).

    The offsets and lengths are read on the host to check them, which synchronizes with the device.
    """
    fn = "flash_attn_varlen_func"
    checks.check_tensor(fn, "q", q, 3 if cu_seqlens_q is not None else 4)
    device = q.device
    paged = page_table is not None
    kv_rank = 4 if paged or cu_seqlens_k is None else 3
    for name, t in (("k", k), ("v", v)):
        checks.check_tensor(fn, name, t, kv_rank, device)
    backend = select_backend(fn, device)
    heads_q = q.shape[-2]
    if v.shape[:-2] != k.shape[:-2]:
        checks.fail(fn, f"k has shape {tuple(k.shape)} and v has {tuple(v.shape)}; they must agree but for "
                        f"the last dimension")
    _check_common(fn, backend, q, k, v, learnable_sink, heads_q, v.shape[-1], softmax_scale=softmax_scale,
                  causal=causal, window_size=window_size, softcap=softcap, deterministic=deterministic,
                  pack_gqa=pack_gqa, num_splits=num_splits, return_lse=return_lse, score_mod=score_mod,
                  mask_mod=mask_mod)
    if block_mask is not None:
        checks.fail(fn, "block_mask is not supported with variable-length sequences; pass mask_mod instead")
    _check_varlen(fn, q, k, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, seqused_q, seqused_k,
                  page_table)
    opts = _options(q.shape[-1], softmax_scale, causal, window_size, softcap, learnable_sink, score_mod,
                    mask_mod, None)
    if backend != "reference":
        _no_kernel(fn, backend, "variable-length attention", device)
    out, lse = reference.attention_varlen(q, k, v, opts, cu_seqlens_q=cu_seqlens_q, cu_seqlens_k=cu_seqlens_k,
                                          seqused_q=seqused_q, seqused_k=seqused_k, page_table=page_table)
    return _result(out, lse, q.dtype, return_lse)


def _check_varlen(fn, q, k, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, seqused_q, seqused_k,
                  page_table):
    device = q.device
    paged = page_table is not None
    if cu_seqlens_q is not None:
        checks.check_tensor(fn, "cu_seqlens_q", cu_seqlens_q, 1, device)
        batch = cu_seqlens_q.shape[0] - 1
        offsets = checks.check_cu_seqlens(fn, "cu_seqlens_q", cu_seqlens_q, batch, q.shape[0], device)
        q_rows = [b - a for a, b in zip(offsets, offsets[1:])]
    else:
        batch = q.shape[0]
        q_rows = [q.shape[1]] * batch
    if paged:
        checks.check_tensor(fn, "page_table", page_table, 2, device)
        if page_table.dtype != torch.int32 or page_table.shape[0] != batch:
            checks.fail(fn, f"page_table must be int32 of shape (batch, max_pages) = ({batch}, ...); got "
                            f"{page_table.dtype} of shape {tuple(page_table.shape)}")
        if seqused_k is None and cu_seqlens_k is None:
            checks.fail(fn, "with page_table, give the key lengths as seqused_k (or cu_seqlens_k)")
        num_pages, page_size = k.shape[0], k.shape[1]
        pages = page_table.tolist()
        if any(p < 0 or p >= num_pages for row in pages for p in row):
            checks.fail(fn, f"page_table holds page indices outside [0, {num_pages}) (k has {num_pages} pages)")
        k_capacity = [page_table.shape[1] * page_size] * batch
    if cu_seqlens_k is not None:
        total_k = None if paged else k.shape[0]
        offsets = checks.check_cu_seqlens(fn, "cu_seqlens_k", cu_seqlens_k, batch,
                                          total_k if total_k is not None else 2**31 - 1, device)
        k_rows = [b - a for a, b in zip(offsets, offsets[1:])]
    elif not paged:
        if k.shape[0] != batch:
            checks.fail(fn, f"k has batch {k.shape[0]}; without cu_seqlens_k or page_table it must be {batch}")
        k_rows = [k.shape[1]] * batch
    else:
        k_rows = k_capacity
    q_len = _used(fn, "seqused_q", seqused_q, q_rows, batch, device)
    k_len = _used(fn, "seqused_k", seqused_k, k_rows, batch, device)
    if paged and any(n > c for n, c in zip(k_len, k_capacity)):
        checks.fail(fn, f"a sequence has {max(k_len)} keys but page_table holds at most {k_capacity[0]} "
                        f"({page_table.shape[1]} pages of {k.shape[1]})")
    for name, given, lengths in (("max_seqlen_q", max_seqlen_q, q_len), ("max_seqlen_k", max_seqlen_k, k_len)):
        if given is None:
            continue
        if not isinstance(given, int) or isinstance(given, bool) or given < 0:
            checks.fail(fn, f"{name} must be None or an int >= 0; got {given!r}", TypeError)
        if lengths and given < max(lengths):
            checks.fail(fn, f"{name} is {given}, but the longest sequence has {max(lengths)} tokens")


def _used(fn, name, seqused, rows, batch, device) -> list[int]:
    if seqused is None:
        return rows
    checks.check_int32_vector(fn, name, seqused, batch, device)
    used = seqused.tolist()
    for i, (n, cap) in enumerate(zip(used, rows)):
        if n < 0 or n > cap:
            checks.fail(fn, f"{name}[{i}] is {n}; allowed: 0 to {cap}, the tokens that sequence has")
    return used
