"""FlexAttention's score_mod and mask_mod, traced with PyTorch and compiled into the kernels.

`trace` captures a mod as an ATen graph, `ops` lowers each ATen op to CuTe DSL, `lower` evaluates a graph
on one score, `tile` on a score tile in registers. The helpers here connect a call's options to a kernel.
"""

from __future__ import annotations

from typing import Optional

import torch

import cutlass

from cuteattn.kernel_args import fake_tensor
from cuteattn.mods.trace import TracedMod, trace_mask_mod, trace_score_mod


def traced(opts) -> tuple:
    """(score_mod, mask_mod) of a call's options, traced, or None each."""
    score_mod = trace_score_mod(opts.score_mod) if opts.score_mod is not None else None
    mask_mod = trace_mask_mod(opts.mask_mod) if opts.mask_mod is not None else None
    return score_mod, mask_mod


# A compiled kernel serves every mod of the same traced code; the tensors of a call come from its own mods.


def _list_or_none(items: list) -> Optional[list]:
    return items or None  # the DSL takes a list of tensors, or None for none


def tensor_args(traced_mods: list, device: torch.device) -> Optional[list]:
    """The captured tensors of traced mods (None entries skipped) as a kernel takes them, in order; None if
    there are none."""
    return _list_or_none([t for m in traced_mods if m is not None for t in m.captured_args(device)])


def fake_captured(traced_mods: list) -> Optional[list]:
    """Compile-time stand-ins for `tensor_args`."""
    from cuteattn.mods.lower import captured_kinds

    return _list_or_none([fake_tensor(kind, max(1, t.dim()), aligned=False, small=True)
                          for m in traced_mods if m is not None for kind, t in zip(captured_kinds(m), m.captured)])


def with_grad(score_mod: Optional[TracedMod]) -> list[torch.Tensor]:
    """A traced score_mod's captured tensors that require grad, in the order of their gradients."""
    return [score_mod.captured[i] for i in score_mod.grads_of] if score_mod is not None else []


def captured_with_grad(opts) -> list[torch.Tensor]:
    """`with_grad` of a call's score_mod."""
    return with_grad(traced(opts)[0])


def zeroed_grads(tensors: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """Zeroed fp32 gradient buffers shaped like `tensors`, which the backward adds into."""
    return [torch.zeros(t.shape, dtype=torch.float32, device=device) for t in tensors]


def grad_args(grads: list[torch.Tensor]) -> Optional[list]:
    """`zeroed_grads` as the backward kernel takes them."""
    return _list_or_none([g.view(1) if g.dim() == 0 else g for g in grads])


def fake_captured_grads(op) -> Optional[list]:
    return _list_or_none([fake_tensor(cutlass.Float32, max(1, t.dim()), aligned=False)
                          for t in with_grad(op.score_mod)])
