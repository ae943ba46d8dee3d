#!/usr/bin/env python3
"""Peak GPU memory of one forward and backward, cuteattn against FA4, in the same run.

    python benchmarks/peak_memory.py [--seqlen 16k] [--hdim 128]

Reports torch.cuda.max_memory_allocated above what q, k, v, dout and their gradients take themselves: the
workspace each implementation allocates (cuteattn: out, lse, the dQ accumulator and the backward's row
statistics; never O(seqlen^2)).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench import size  # noqa: E402


def peak_mib(attention, shape, causal) -> tuple[float, float]:
    q, k, v = (torch.randn(shape, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    dout = torch.randn(shape, device="cuda", dtype=torch.bfloat16)
    for _ in range(2):  # the first call compiles
        grads = torch.autograd.grad(attention(q, k, v, causal), (q, k, v), dout)
        del grads
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    grads = torch.autograd.grad(attention(q, k, v, causal), (q, k, v), dout)
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    inputs = 4 * q.numel() * q.element_size() / 2**20
    del grads
    return peak / 2**20, inputs


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seqlen", type=size, default=16384)
    p.add_argument("--hdim", type=int, default=128)
    args = p.parse_args()
    import cuteattn
    from flash_attn.cute import flash_attn_func as fa4

    def first(out):
        return out[0] if isinstance(out, tuple) else out

    shape = (16384 // args.seqlen, args.seqlen, 2048 // args.hdim, args.hdim)
    providers = {"cuteattn": lambda q, k, v, c: cuteattn.flash_attn_func(q, k, v, causal=c),
                 "fa4": lambda q, k, v, c: first(fa4(q, k, v, causal=c))}
    print(f"shape (batch, seqlen, heads, hdim) = {shape}, bf16; q, k, v and dout take "
          f"{4 * torch.Size(shape).numel() * 2 / 2**20:.0f} MiB")
    for causal in (False, True):
        for name, attention in providers.items():
            peak, _ = peak_mib(attention, shape, causal)
            print(f"causal={int(causal)} {name:9s} peak above the inputs: {peak:8.1f} MiB")


if __name__ == "__main__":
    main()
