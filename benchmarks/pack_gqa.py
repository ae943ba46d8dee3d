#!/usr/bin/env python3
"""The sm90 forward with few queries and grouped KV heads (decoding, speculative verification): the query heads
of a KV head packed into a tile's rows and unpacked tiles, neither splitting the keys (num_splits=1), num_splits=0
(packing as by default, up to 64 queries, and splitting the keys of launches of few tiles among CTAs), and FA4
(its own pack_gqa choice; its split-KV heuristic, num_splits=0, fails an assertion at these shapes), in one
process.
Median time of do_bench; bandwidth counts K and V read once and q, out written once.

    python benchmarks/pack_gqa.py [--seqlens-q 1,4,16,64,128] [--seqlens-k 4096,16384] [--batch 8] [--causal]
"""

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
BATCH, HEADS, HEADS_KV, HEAD_DIM = 8, 32, 8, 128


def ints(text: str) -> list:
    return [int(x) for x in text.split(",")]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seqlens-q", type=ints, default=[1, 4, 16, 64, 128])
    p.add_argument("--seqlens-k", type=ints, default=[4096, 16384])
    p.add_argument("--batch", type=int, default=BATCH)
    p.add_argument("--causal", action="store_true")
    p.add_argument("--rep-ms", type=int, default=100)
    args = p.parse_args()
    from triton.testing import do_bench

    import cuteattn

    providers = {"packed": lambda q, k, v: cuteattn.flash_attn_func(q, k, v, causal=args.causal, pack_gqa=True,
                                                                    num_splits=1),
                 "unpacked": lambda q, k, v: cuteattn.flash_attn_func(q, k, v, causal=args.causal, pack_gqa=False,
                                                                      num_splits=1),
                 "split-KV": lambda q, k, v: cuteattn.flash_attn_func(q, k, v, causal=args.causal, num_splits=0)}
    try:
        from flash_attn.cute import flash_attn_func as fa4

        providers["fa4"] = lambda q, k, v: fa4(q, k, v, causal=args.causal)
    except ImportError as e:
        print(f"fa4 not importable: {e}")
    print(f"{torch.cuda.get_device_name()}, bf16, batch {args.batch}, heads {HEADS}/{HEADS_KV}, hdim {HEAD_DIM}, "
          f"causal {int(args.causal)}; us (TB/s)")
    print("| seqlen_q | seqlen_k | " + " | ".join(providers) + " |")
    print("| --- | --- |" + " --- |" * len(providers))
    for seqlen_k in args.seqlens_k:
        for seqlen_q in args.seqlens_q:
            q = torch.randn(args.batch, seqlen_q, HEADS, HEAD_DIM, device="cuda", dtype=torch.bfloat16)
            k, v = (torch.randn(args.batch, seqlen_k, HEADS_KV, HEAD_DIM, device="cuda", dtype=torch.bfloat16)
                    for _ in range(2))
            moved = 2 * (k.numel() + v.numel() + 2 * q.numel())
            cells = []
            for name, fn in providers.items():
                try:
                    fn(q, k, v)
                    ms = do_bench(lambda: fn(q, k, v), warmup=25, rep=args.rep_ms, return_mode="median")
                    cells.append(f"{ms * 1e3:.1f} ({moved / ms / 1e9:.2f})")
                except Exception as e:  # a provider that cannot run the case is reported, not fatal
                    cells.append(f"{type(e).__name__}")
            print(f"| {seqlen_q} | {seqlen_k} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
