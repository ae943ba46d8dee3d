"""FlexAttention's score_mod and mask_mod, traced with PyTorch and compiled into the kernels.

`trace` captures a mod as an ATen graph, `ops` lowers each ATen op to CuTe DSL, `lower` evaluates a graph
on one score, `tile` on a score tile in registers. The helpers here connect a call's options to a kernel.
"""

from __future__ import annotations

import torch

import cutlass

from cuteattn.kernel_args import fake_tensor
from cuteattn.mods.trace import TracedMod, trace_mask_mod, trace_score_mod


def traced(opts) -> tuple:
    """(score_mod, mask_mod) of a call's options, traced, or None each."""
    score_mod = trace_score_mod(opts.score_mod) if opts.score_mod is not None else None
    mask_mod = trace_mask_mod(opts.mask_mod) if opts.mask_mod is not None else None
    return score_mod, mask_mod


def _mods(op) -> list[TracedMod]:
    return [m for m in (op.score_mod, op.mask_mod) if m is not None]


def captured_args(op, device: torch.device) -> list[torch.Tensor]:
    """The captured tensors a kernel takes: score_mod's, then mask_mod's."""
    return [t for m in _mods(op) for t in m.captured_args(device)]


def fake_captured(op) -> list:
    """Compile-time stand-ins for `captured_args`."""
    from cuteattn.mods.lower import captured_kinds

    return [fake_tensor(kind, max(1, t.dim()), aligned=False)
            for m in _mods(op) for kind, t in zip(captured_kinds(m), m.captured)]
