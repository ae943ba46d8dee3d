"""Turning torch tensors into CuTe DSL kernel arguments, and their compile-time stand-ins."""

from __future__ import annotations

from typing import Type

import cuda.bindings.driver as cuda
import torch

import cutlass
import cutlass.cute as cute
from cutlass.cute.runtime import from_dlpack, make_fake_tensor

TORCH_TO_CUTE = {torch.bfloat16: cutlass.BFloat16, torch.float16: cutlass.Float16, torch.float32: cutlass.Float32}
ALIGN_BYTES = 16  # TMA and 16-byte vector loads


def fake_tensor(dtype: Type[cutlass.Numeric], rank: int, aligned: bool = True):
    """A device tensor of dynamic shape and strides, last stride 1; if `aligned`, 16-byte aligned rows."""
    elems = ALIGN_BYTES * 8 // dtype.width if aligned else 1
    shape = tuple(cute.sym_int() for _ in range(rank))
    stride = (*(cute.sym_int64(divisibility=elems) for _ in range(rank - 1)), 1)
    return make_fake_tensor(dtype, shape, stride=stride, assumed_align=ALIGN_BYTES if aligned else None)


def device_tensor(t: torch.Tensor, aligned: bool = True):
    """`t` as a kernel argument matching `fake_tensor(..., aligned)`: dynamic layout, last dim contiguous."""
    if aligned and 1 in t.shape[:-1]:
        # A size-1 dim may carry any stride; give it an aligned one, as the compiled kernel assumes.
        elems = ALIGN_BYTES // t.element_size()
        t = t.as_strided(t.shape, [elems if n == 1 and i < t.dim() - 1 else s
                                   for i, (n, s) in enumerate(zip(t.shape, t.stride()))])
    arg = from_dlpack(t.detach(), assumed_align=ALIGN_BYTES if aligned else None)
    return arg.mark_layout_dynamic(leading_dim=t.dim() - 1)


def current_stream(device: torch.device) -> cuda.CUstream:
    return cuda.CUstream(torch.cuda.current_stream(device).cuda_stream)
