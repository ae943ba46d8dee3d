"""Host side of the sm90 backward: which requests the kernels cover, and the three launches.

deterministic=True makes the key blocks add into the dQ workspace in order (a counter per query block),
so dq, dk, dv are bitwise reproducible; dk and dv always are (one CTA owns each key block).

preprocess (dpsum, lse in log2 units, the fp32 dQ workspace zeroed) -> the main kernel (dK, dV, and dQ added
into the workspace), a programmatic dependent launch: its CTAs load K and V while the preprocess ends ->
postprocess (dQ in the input dtype), and with a split tail the sum of its parts' dK and dV (`tail_split`).
The learnable sink's gradient needs only lse and dpsum:
d sink[h] = -sum over rows of exp(sink[h] - lse) * dpsum.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import Optional

import torch

import cutlass

from cuteattn import mods, reference
from cuteattn.compile_cache import get_or_compile
from cuteattn.checks import tma_compatible
from cuteattn.kernel_args import TORCH_TO_CUTE, aligned_view, compile_kernel, fake_tensor
from cuteattn.mods import block_sparsity
from cuteattn.mods.block_sparsity import sample_mods
from cuteattn.registry import compile_target
from cuteattn.sm90.bwd_config import TILE_N, BwdConfig
from cuteattn.sm90.bwd_kernel import FlashBwdSm90
from cuteattn.sm90.bwd_kernel_split_d import FlashBwdSm90SplitD
from cuteattn.sm90.bwd_kernel_wide import TILE_N as WIDE_TILE_N, FlashBwdSm90Wide
from cuteattn.sm90.bwd_postprocess import DqPostprocess, TailSum
from cuteattn.sm90.bwd_preprocess import bwd_preprocess
from cuteattn.masking import window_args
from cuteattn.sm90.forward import scales
from cuteattn.tile_scheduler import sm_count, tail_parts

HEAD_DIMS = (64, 96, 128, 192, 256)
HEAD_DIM_PAIRS = ((192, 128),)  # head_dim_v != head_dim
# (plain, other) per (head_dim, head_dim_v); other: a window (causal too), softcap or mods. hdim 192 runs the head
# dim on the wgmma's M over 96 keys a CTA (`bwd_kernel_wide`), one dO stage at head_dim_v 192 (two do not fit
# beside K, V, P, dS and dQ); hdim 256 the split-d kernel, whose P^T and dS^T take shared memory: one Q and dO
# stage. hdim 64: FA4's 128 query rows a step, 480 TFLOP/s against 402 over 64 rows (H100, 16k, notes-5), its dQ
# by rows: 483 against 463 (H200, 16k, notes-8). hdim 128: 80 rows unmasked with lse and dpsum read under the
# GEMMs in flight and dV issued before dS^T's fence: 556 TFLOP/s at 4k against 550 over 64 rows, 600 against 590 at
# 16k (H100, settled clocks, notes-37); masked, 64 rows (80 rows and FA4's order over 64 were slower causal,
# notes-36 and -37). dQ's GEMM before dK's (overlap_dq) at hdims 64 and 128: 0 to +4% (notes-6).
_DEFAULT = BwdConfig()
_OVERLAP = BwdConfig(overlap_dq=True)
_LEAN_80 = replace(_OVERLAP, tile_m=80, prefetch_stats=True, dv_under_fence=True)
_WIDE = BwdConfig(head_dim_on_m=True, tile_n=WIDE_TILE_N)
CONFIGS = {(64, 64): (BwdConfig(tile_m=128, overlap_dq=True, dq_by_rows=True),) * 2,
           (128, 128): (_LEAN_80, _OVERLAP),
           (192, 192): (replace(_WIDE, do_stages=1),) * 2,
           (192, 128): (_WIDE, _WIDE),
           (256, 256): (BwdConfig(num_stages=1),) * 2}


# A split tail (`tail_split`): at most MAX_TAIL_SPLITS parts a key block, each of at least MIN_TAIL_STEPS query
# blocks and costing TAIL_PART_STEPS more: loading K and V, the first step with nothing to overlap it, and the
# fp32 dK and dV with their sum.
MAX_TAIL_SPLITS = 8
MIN_TAIL_STEPS = 8
TAIL_PART_STEPS = 4


def default_config(head_dim: int, opts: reference.Options, head_dim_v: Optional[int] = None) -> BwdConfig:
    plain, other = CONFIGS.get((head_dim, head_dim_v or head_dim), (_DEFAULT, _DEFAULT))
    features = (opts.window_left, opts.window_right, opts.score_mod, opts.mask_mod, opts.block_mask)
    return other if features != (None,) * len(features) or opts.softcap > 0 else plain


def unsupported(head_dim: int, head_dim_v: int, opts: reference.Options) -> Optional[str]:
    """The first feature of the request that the sm90 backward does not cover yet, or None."""
    if head_dim not in HEAD_DIMS or (head_dim_v != head_dim and (head_dim, head_dim_v) not in HEAD_DIM_PAIRS):
        return (f"the backward with head_dim {head_dim} and head_dim_v {head_dim_v} (covered: equal head dims "
                f"in {HEAD_DIMS}, and (head_dim, head_dim_v) in {HEAD_DIM_PAIRS})")
    return None


def _kind(head_dim: int, head_dim_v: int, config: BwdConfig) -> type:
    """The kernel a request runs: the key split (`FlashBwdSm90`) where it covers the head dims and the config asks
    for no other, else the head dim on the wgmma's M (`FlashBwdSm90Wide`) or the column split."""
    if config.head_dim_on_m:
        return FlashBwdSm90Wide
    if FlashBwdSm90.covers(head_dim, head_dim_v) and not config.split_columns:
        return FlashBwdSm90
    return FlashBwdSm90SplitD


@functools.lru_cache(maxsize=None)
def _kernel(dtype, head_dim, head_dim_v, qhead_per_kvhead, has_window_left, has_window_right, has_softcap,
            deterministic, score_mod, mask_mod, config, tail_splits) -> FlashBwdSm90:
    kind = _kind(head_dim, head_dim_v, config)
    return kind(TORCH_TO_CUTE[dtype], head_dim, head_dim_v, qhead_per_kvhead, has_window_left=has_window_left,
                has_window_right=has_window_right, has_softcap=has_softcap, deterministic=deterministic,
                score_mod=score_mod, mask_mod=mask_mod, config=config, tail_splits=tail_splits)


def kernel_for(dtype: torch.dtype, head_dim: int, head_dim_v: int, qhead_per_kvhead: int, opts: reference.Options,
               deterministic: bool = False, config: Optional[BwdConfig] = None,
               traced: Optional[tuple] = None, tail_splits: int = 1) -> FlashBwdSm90:
    """The kernel object of a request; `traced`: the call's `mods.traced(opts)`, when the caller has it;
    tail_splits: the parts of the last key blocks (`tail_split`)."""
    return _kernel(dtype, head_dim, head_dim_v, qhead_per_kvhead, opts.window_left is not None,
                   opts.window_right is not None, opts.softcap > 0, deterministic,
                   *(traced if traced is not None else mods.traced(opts)),
                   config or default_config(head_dim, opts, head_dim_v),
                   tail_splits)


def tail_split(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, opts: reference.Options, config: BwdConfig,
               deterministic: bool) -> tuple:
    """(key blocks, parts): the launch's last `key blocks` CTAs, each a key block, split into `parts` runs of its
    query blocks (`tile_scheduler.tail_parts`), or none, (0, 1). Only with config.tail_split in the key-split
    or the wide kernel (`bwd_kernel_wide`), where every key block sees every query (no window, causal or
    mask_mod) and each adds into dQ as it goes (not deterministic)."""
    batch, seqlen_q, heads, head_dim = q.shape
    seqlen_k, heads_kv = k.shape[1], k.shape[2]
    unmasked = (opts.window_left, opts.window_right, opts.mask_mod, opts.block_mask) == (None,) * 4
    kind = _kind(head_dim, v.shape[-1], config)
    if not (config.tail_split and unmasked and kind is not FlashBwdSm90SplitD) or deterministic:
        return 0, 1
    key_blocks = -(-seqlen_k // kind.keys_per_cta(config)) * heads_kv * batch
    steps = -(-seqlen_q // config.tile_m) * (heads // heads_kv)
    return tail_parts(key_blocks, sm_count(q.device.index), steps, TAIL_PART_STEPS, MAX_TAIL_SPLITS,
                      MIN_TAIL_STEPS)


def _compile(op: FlashBwdSm90):
    q, k, v, do, dk, dv = (fake_tensor(op.dtype, 4) for _ in range(6))
    lse_log2, dpsum = (fake_tensor(cutlass.Float32, 3) for _ in range(2))
    dq_accum = fake_tensor(cutlass.Float32, 4)
    dq_turn = fake_tensor(cutlass.Int32, 4, aligned=False) if op.deterministic else None
    scalars = (cutlass.Float32(1.0),) * 3 + (cutlass.Int32(0),) * 2 + (cutlass.Float32(1.0),)
    lists = (None,) * 4
    if op.mask_mod is not None:
        lists = (fake_tensor(cutlass.Int32, 3, aligned=False), fake_tensor(cutlass.Int32, 4, aligned=False),
                 *((fake_tensor(cutlass.Int32, 4, aligned=False), None) if op.deterministic else
                   (None, fake_tensor(cutlass.Int32, 1, aligned=False))))
    tail = (fake_tensor(cutlass.Float32, 3), fake_tensor(cutlass.Float32, 3)) if op.split_tail else (None, None)
    return compile_kernel(op, q, k, v, do, lse_log2, dpsum, dq_accum, dq_turn, dk, dv, *scalars,
                          mods.fake_captured([op.score_mod, op.mask_mod]), mods.fake_captured_grads(op), *lists,
                          *tail)


def _compile_tail_sum(op: TailSum):
    return compile_kernel(op, fake_tensor(cutlass.Float32, 3), fake_tensor(cutlass.Float32, 3),
                          fake_tensor(op.dtype, 4), fake_tensor(op.dtype, 4))


def _compile_postprocess(op: DqPostprocess):
    return compile_kernel(op, fake_tensor(cutlass.Float32, 4), fake_tensor(op.dtype, 4), cutlass.Float32(1.0))


def _tma_ready(t: torch.Tensor) -> torch.Tensor:
    """`t` as the kernels take it (autograd may hand over any strides): itself if TMA can read it, else a
    contiguous copy."""
    return aligned_view(t) if tma_compatible(t) else t.detach().contiguous()


def backward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor, dout: torch.Tensor,
             lse: torch.Tensor, opts: reference.Options, deterministic: bool = False,
             config: Optional[BwdConfig] = None, grads: Optional[tuple] = None, tail: Optional[tuple] = None):
    """(dq, dk, dv, dsink, dcaptured) of the attention forward that gave `out` and `lse`: dsink is None without
    a sink, dcaptured the gradients of score_mod's captured tensors that require grad (a list, maybe empty).
    dq, dk, dv are written into `grads` when given (contiguous, shaped like q, k, v). tail: a split tail's
    (key blocks, parts) to take in place of `tail_split`'s."""
    batch, seqlen_q, heads, head_dim = q.shape
    cfg = config or default_config(head_dim, opts, v.shape[-1])
    traced = mods.traced(opts)
    tail = tail or tail_split(q, k, v, opts, cfg, deterministic)
    op = kernel_for(q.dtype, head_dim, v.shape[-1], heads // k.shape[2], opts, deterministic, cfg, traced,
                    tail_splits=tail[1])
    dq, dk, dv = grads or (torch.empty(t.shape, dtype=t.dtype, device=t.device) for t in (q, k, v))
    m_blocks = (seqlen_q + cfg.tile_m - 1) // cfg.tile_m
    dpsum, lse_log2 = (torch.empty(batch, heads, m_blocks * cfg.tile_m, dtype=torch.float32, device=q.device)
                       for _ in range(2))
    with_grad = mods.with_grad(traced[0])
    dcaptured = mods.zeroed_grads(with_grad, q.device)
    if q.numel() == 0 or k.shape[1] == 0:
        dsink = None if opts.learnable_sink is None else torch.zeros_like(opts.learnable_sink)
        return dq.zero_(), dk.zero_(), dv.zero_(), dsink, dcaptured
    # The main kernel starts before the preprocess ends (programmatic dependent launch), so the preprocess must
    # be the last work in the stream before it: every copy, memset and block list is made first.
    q, k, v, out, dout = (_tma_ready(t) for t in (q, k, v, out, dout))
    dq_accum = torch.empty(batch, heads, m_blocks, cfg.tile_m * head_dim, dtype=torch.float32, device=q.device)
    dq_turn = torch.zeros(batch, heads, m_blocks, 2, dtype=torch.int32, device=q.device) if deterministic else None
    scale_log2, tanh_scale, score_scale = scales(opts, op.score_mod is not None)
    left, right = window_args(opts)
    lists = (None,) * 4
    if op.mask_mod is not None:
        count, blocks, turns, order = block_sparsity.backward_lists(
            opts, batch, heads, k.shape[2], seqlen_q, k.shape[1], cfg.tile_m, op.tile_n, op.l2_group(seqlen_q),
            q.device)
        lists = (count, blocks, *((turns, None) if deterministic else (None, order)))
    mod_tensors, mod_grads = mods.tensor_args(traced, q.device), mods.grad_args(dcaptured)
    compiled = get_or_compile(("sm90.bwd", op), lambda: _compile(op))
    bwd_preprocess(out, dout, lse, dpsum, lse_log2, dq_accum)
    parts = (None, None)
    if op.split_tail:
        parts = tuple(torch.empty(tail[1], tail[0] * op.tile_n, t.shape[-1], dtype=torch.float32, device=q.device)
                      for t in (k, v))
    compiled(q, k, v, dout, lse_log2, dpsum, dq_accum, dq_turn, dk, dv, scale_log2, tanh_scale, opts.softmax_scale,
             left, right, score_scale, mod_tensors, mod_grads, *lists, *parts)
    if op.split_tail:
        tail_sum = TailSum(op.dtype, head_dim, v.shape[-1], op.tile_n)
        get_or_compile(("sm90.bwd_tail_sum", tail_sum), lambda: _compile_tail_sum(tail_sum))(*parts, dk, dv)
    post = DqPostprocess(op.dtype, head_dim, cfg.tile_m, cfg.dq_by_rows)
    get_or_compile(("sm90.bwd_postprocess", post), lambda: _compile_postprocess(post))(
        dq_accum, dq, opts.softmax_scale)
    dsink = None
    if opts.learnable_sink is not None:
        sink = opts.learnable_sink.detach().float().view(1, -1, 1)
        dsink = -(torch.exp(sink - lse) * dpsum[..., :seqlen_q]).sum(dim=(0, 2)).to(opts.learnable_sink.dtype)
    return dq, dk, dv, dsink, [g.to(t.dtype) for g, t in zip(dcaptured, with_grad)]


@compile_target("sm90.bwd", "sm_90a")
def build() -> None:
    plain = reference.Options(softmax_scale=1.0, window_left=None, window_right=None, softcap=0.0,
                              learnable_sink=None, score_mod=None, mask_mod=None, block_mask=None)
    causal = replace(plain, window_right=0)
    for head_dim, head_dim_v in [(d, d) for d in HEAD_DIMS] + list(HEAD_DIM_PAIRS):
        for opts in (plain, causal):
            op = kernel_for(torch.bfloat16, head_dim, head_dim_v, 1, opts)
            _compile(op)
            _compile_postprocess(DqPostprocess(cutlass.BFloat16, head_dim, op.config.tile_m, op.config.dq_by_rows))
    for head_dim in (128, 256):
        for opts in (replace(causal, window_left=100, softcap=30.0), replace(plain, window_left=64)):
            _compile(kernel_for(torch.float16, head_dim, head_dim, 4, opts))
        _compile(kernel_for(torch.bfloat16, head_dim, head_dim, 2, replace(causal, window_left=100),
                            deterministic=True))
    _compile_postprocess(DqPostprocess(cutlass.Float16, 128, default_config(128, causal).tile_m))
    for head_dim in (64, 128):
        _compile(kernel_for(torch.bfloat16, head_dim, head_dim, 2, plain, tail_splits=7))
    _compile(kernel_for(torch.bfloat16, 128, 128, 1, replace(plain, softcap=30.0), tail_splits=3))
    _compile_tail_sum(TailSum(cutlass.BFloat16, 128, 128, TILE_N))
    for head_dim_v in (192, 128):
        _compile(kernel_for(torch.bfloat16, 192, head_dim_v, 2, plain, tail_splits=3))
        _compile_tail_sum(TailSum(cutlass.BFloat16, 192, head_dim_v, WIDE_TILE_N))
    score_mod, mask_mod = sample_mods()
    for head_dim in (128, 192):
        _compile(kernel_for(torch.bfloat16, head_dim, head_dim, 1, replace(plain, score_mod=score_mod,
                                                                          mask_mod=mask_mod)))
    _compile(kernel_for(torch.bfloat16, 64, 64, 2, replace(causal, mask_mod=mask_mod), deterministic=True))
    slope, scale = torch.ones(4), torch.ones(4)

    def scaled_alibi(score, b, h, q_idx, kv_idx):  # no gather by position, a derivative that reads no score
        return score * scale[h] + slope[h] * (kv_idx - q_idx)

    _compile(kernel_for(torch.bfloat16, 128, 128, 1, replace(plain, score_mod=scaled_alibi)))
