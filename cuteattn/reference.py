"""The PyTorch path: every feature of cuteattn in plain PyTorch, computed in fp32.

It is the oracle of every GPU test and what runs on CPU tensors.
"""

from __future__ import annotations

import math

import torch

LOG2_E = math.log2(math.e)


def bwd_preprocess(out: torch.Tensor, dout: torch.Tensor, lse: torch.Tensor):
    """The backward's per-row statistics, from O and dO (batch, seqlen, heads, head_dim_v) and lse.

    Returns `dpsum = rowsum(dO * O)` and `lse_log2 = lse * log2(e)`, both (batch, heads, seqlen) fp32.
    A row with no visible key (lse = -inf) gets lse_log2 = 0, so exp2(s - lse_log2) of its masked
    scores stays 0 rather than NaN.
    """
    dpsum = (dout.float() * out.float()).sum(dim=-1).transpose(1, 2)
    lse_log2 = torch.where(torch.isinf(lse) & (lse < 0), torch.zeros_like(lse), lse * LOG2_E)
    return dpsum.contiguous(), lse_log2.float().contiguous()
