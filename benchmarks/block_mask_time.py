#!/usr/bin/env python3
"""Time of cuteattn's block-mask computation from a mask_mod (the tile classes and the forward's lists),
first call (a cold list cache, kernel already compiled) and a later call (cached), on the GPU.

    python benchmarks/block_mask_time.py [--seqlen 16k]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench import size, variant_mods  # noqa: E402
from cuteattn.mods import block_sparsity  # noqa: E402
from cuteattn.reference import Options  # noqa: E402


def timed_ms(fn) -> float:
    torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1e3


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seqlen", type=size, default=16384)
    p.add_argument("--heads", type=int, default=16)
    args = p.parse_args()
    for variant in ("document", "sliding_window"):
        _, mask_mod = variant_mods(variant, args.heads, args.seqlen)
        opts = Options(softmax_scale=1.0, window_left=None, window_right=None, softcap=0.0, learnable_sink=None,
                       score_mod=None, mask_mod=mask_mod, block_mask=None)

        def lists():
            return block_sparsity.forward_lists(opts, 1, args.heads, args.seqlen, args.seqlen, 128, 128, 2,
                                                torch.device("cuda"))

        lists()  # compiles the classification kernel
        cold = []
        for _ in range(20):
            block_sparsity._lists.clear()
            cold.append(timed_ms(lists))
        cached = [timed_ms(lists) for _ in range(20)]
        print(f"{variant:15s} seqlen {args.seqlen}: first call {statistics.median(cold):.3f} ms, "
              f"cached {statistics.median(cached):.4f} ms (median of 20)")


if __name__ == "__main__":
    main()
