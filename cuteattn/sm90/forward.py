"""Host side of the sm90 forward: which requests the kernel covers, its configuration, the launch."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Optional

import torch

import cutlass

from cuteattn.compile_cache import get_or_compile
from cuteattn.kernel_args import TORCH_TO_CUTE, aligned_view, compile_kernel, fake_tensor
from cuteattn.registry import compile_target
from cuteattn.sm90.fwd_kernel import FlashFwdSm90, FwdConfig

HEAD_DIMS = (64, 96, 128)
LOG2_E = math.log2(math.e)

# Per head dim: the tile and pipeline depth measured fastest on the H100.
CONFIGS = {64: FwdConfig(tile_n=128, num_stages=2), 96: FwdConfig(tile_n=128, num_stages=2),
           128: FwdConfig(tile_n=128, num_stages=2)}


def unsupported(head_dim: int, head_dim_v: int, opts) -> Optional[str]:
    """The first feature of the request that the sm90 forward does not cover yet, or None."""
    if head_dim not in HEAD_DIMS or head_dim_v != head_dim:
        return f"head_dim {head_dim} with head_dim_v {head_dim_v} (covered: equal head dims in {HEAD_DIMS})"
    if opts.window_left is not None or opts.window_right not in (None, 0):
        return "a sliding window"
    for feature, present in (("softcap", opts.softcap > 0), ("learnable_sink", opts.learnable_sink is not None),
                             ("score_mod", opts.score_mod is not None), ("mask_mod", opts.mask_mod is not None),
                             ("block_mask", opts.block_mask is not None)):
        if present:
            return feature
    return None


def kernel_for(dtype: torch.dtype, head_dim: int, head_dim_v: int, qhead_per_kvhead: int, causal: bool,
               config: Optional[FwdConfig] = None) -> FlashFwdSm90:
    return FlashFwdSm90(TORCH_TO_CUTE[dtype], head_dim, head_dim_v, qhead_per_kvhead, causal,
                        config or CONFIGS[head_dim])


def _compile(op: FlashFwdSm90):
    q, k, v, o = (fake_tensor(op.dtype, 4) for _ in range(4))
    lse = fake_tensor(cutlass.Float32, 3, aligned=False)
    return compile_kernel(op, q, k, v, o, lse, cutlass.Float32(1.0))


def forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, softmax_scale: float, causal: bool,
            config: Optional[FwdConfig] = None, out: Optional[torch.Tensor] = None,
            lse: Optional[torch.Tensor] = None):
    """out (batch, seqlen_q, heads, head_dim_v) in q's dtype and lse (batch, heads, seqlen_q) fp32, written
    into `out` and `lse` when given (contiguous)."""
    batch, seqlen_q, heads, head_dim = q.shape
    op = kernel_for(q.dtype, head_dim, v.shape[-1], heads // k.shape[2], causal, config)
    if out is None:
        out = torch.empty(batch, seqlen_q, heads, v.shape[-1], dtype=q.dtype, device=q.device)
    if lse is None:
        lse = torch.empty(batch, heads, seqlen_q, dtype=torch.float32, device=q.device)
    if out.numel() == 0 or k.shape[1] == 0:  # nothing to compute; TMA cannot describe an empty tensor
        return out.zero_(), lse.fill_(-math.inf)
    compiled = get_or_compile(("sm90.fwd", op), lambda: _compile(op))
    compiled(aligned_view(q), aligned_view(k), aligned_view(v), out, lse,
             softmax_scale * LOG2_E)
    return out, lse


@compile_target("sm90.fwd", "sm_90a")
def build() -> None:
    for head_dim in HEAD_DIMS:
        for causal in (False, True):
            _compile(kernel_for(torch.bfloat16, head_dim, head_dim, 1, causal))
    _compile(replace(kernel_for(torch.float16, 128, 128, 4, True), config=FwdConfig(tile_n=64, num_stages=3)))
