#!/usr/bin/env python3
"""What a forward launch costs apart from its key blocks: cuteattn and its peers, in one run.

    python benchmarks/tile_cost.py [--hdims 64,128] [--providers cuteattn,fa4,sdpa-cudnn] [--rounds 3]

The short-sequence cells (seqlen 1k) lose to a cost that does not grow with the keys: loading Q, the first
block's scores and softmax with nothing to overlap them, the last P V, the epilogue, the CTA's start. Here
seqlen_q stays at 1k (batch 16, dim 2048, non-causal) while seqlen_k takes 128 to 2048 keys; a line fitted
to the times gives the intercept (the launch's cost at zero keys, all tiles together) and the slope (its cost
per 1k keys). The providers tile differently, so compare intercepts and slopes, not per-tile figures. Each
round measures every provider once at each seqlen_k, the order reversed on odd rounds; the times are medians
over rounds of do_bench medians.
"""

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402

SEQLEN_Q = 1024
BATCH = 16
SEQLENS_K = (128, 256, 512, 1024, 2048)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hdims", type=bench.sizes, default=[64, 128])
    p.add_argument("--providers", type=bench.choices_list(bench.PROVIDERS), default=["cuteattn", "fa4", "sdpa-cudnn"])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--rep-ms", type=int, default=50)
    args = p.parse_args()

    from triton.testing import do_bench

    loaded, unavailable = bench.load_providers(args.providers, {})
    for name, why in unavailable.items():
        print(f"{name}: {why}")
    names = list(loaded)
    print("| hdim | provider | " + " | ".join(f"{n} keys, us" for n in SEQLENS_K) +
          " | intercept, us | slope, us per 1k keys |")
    print("| --- " * (4 + len(SEQLENS_K)) + "|")
    for hdim in args.hdims:
        heads = 2048 // hdim
        q = torch.randn(BATCH, SEQLEN_Q, heads, hdim, device="cuda", dtype=torch.bfloat16)
        runs = {}
        for seqlen_k in SEQLENS_K:
            k, v = (torch.randn(BATCH, seqlen_k, heads, hdim, device="cuda", dtype=torch.bfloat16) for _ in range(2))
            case = bench.Case("fwd", hdim, False, SEQLEN_Q, BATCH, heads)
            for name in names:
                runs[name, seqlen_k] = loaded[name](q, k, v, case)
        times = {key: [] for key in runs}
        for r in range(args.rounds):
            for seqlen_k in SEQLENS_K:
                for name in (names if r % 2 == 0 else names[::-1]):
                    fn = runs[name, seqlen_k]
                    fn()
                    torch.cuda.synchronize()
                    times[name, seqlen_k].append(do_bench(fn, warmup=bench.WARMUP_MS, rep=args.rep_ms,
                                                          return_mode="median") * 1e3)
        for name in names:
            us = [statistics.median(times[name, n]) for n in SEQLENS_K]
            slope, intercept = statistics.linear_regression(SEQLENS_K, us)
            print(f"| {hdim} | {name} | " + " | ".join(f"{t:.1f}" for t in us) +
                  f" | {intercept:.1f} | {slope * 1024:.1f} |")


if __name__ == "__main__":
    main()
