#!/usr/bin/env python3
"""The split tail of the sm90 forward: a launch's last, part-full wave of tiles split among CTAs (num_splits=0)
against the same call unsplit (num_splits=1) and FA4, in one process. Each round times every provider once per
shape, the order reversed on odd rounds; TFLOP/s of the median over rounds of do_bench medians.

    python benchmarks/split_tail.py [--rounds 5] [--shapes 1x16384x16x128,...]  (batch x seqlen x heads x hdim)
"""

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
SHAPES = "1x16384x16x128,2x12288x16x128,1x16384x32x64,1x1000x6x128:9000"


def shapes(text: str) -> list:
    """(batch, seqlen_q, seqlen_k, heads, head_dim) of each 'BxSQxHxD[:SK]'."""
    out = []
    for item in text.split(","):
        dims, _, seqlen_k = item.partition(":")
        batch, seqlen_q, heads, head_dim = (int(x) for x in dims.split("x"))
        out.append((batch, seqlen_q, int(seqlen_k or seqlen_q), heads, head_dim))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", type=shapes, default=shapes(SHAPES))
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--rep-ms", type=int, default=200)
    args = p.parse_args()
    from triton.testing import do_bench

    import cuteattn
    from cuteattn import reference
    from cuteattn.sm90 import forward

    providers = {"unsplit": lambda q, k, v: cuteattn.flash_attn_func(q, k, v, num_splits=1),
                 "tail": lambda q, k, v: cuteattn.flash_attn_func(q, k, v, num_splits=0)}
    try:
        from flash_attn.cute import flash_attn_func as fa4

        providers["fa4"] = lambda q, k, v: fa4(q, k, v)
    except ImportError as e:
        print(f"fa4 not importable: {e}")
    print(f"{torch.cuda.get_device_name()}, bf16, non-causal, {args.rounds} rounds; TFLOP/s")
    print("| batch | seqlen_q | seqlen_k | heads | hdim | tail (tiles, parts) | " + " | ".join(providers) + " |")
    print("| --- | --- | --- | --- | --- | --- |" + " --- |" * len(providers))
    for batch, seqlen_q, seqlen_k, heads, head_dim in args.shapes:
        q = torch.randn(batch, seqlen_q, heads, head_dim, device="cuda", dtype=torch.bfloat16)
        k, v = (torch.randn(batch, seqlen_k, heads, head_dim, device="cuda", dtype=torch.bfloat16) for _ in range(2))
        opts = reference.Options(softmax_scale=head_dim ** -0.5, window_left=None, window_right=None, softcap=0.0,
                                 learnable_sink=None, score_mod=None, mask_mod=None, block_mask=None)
        tail = forward.tail_split(q, k, opts, forward.default_config(head_dim, opts, seqlen_k), 1, 0)
        flops = 4 * batch * heads * seqlen_q * seqlen_k * head_dim
        times = {name: [] for name in providers}
        for name, fn in providers.items():
            fn(q, k, v)
        for r in range(args.rounds):
            for name in (list(providers) if r % 2 == 0 else list(providers)[::-1]):
                fn = providers[name]
                times[name].append(do_bench(lambda: fn(q, k, v), warmup=25, rep=args.rep_ms, return_mode="median"))
        cells = [f"{flops / statistics.median(times[name]) / 1e9:.1f}" for name in providers]
        print(f"| {batch} | {seqlen_q} | {seqlen_k} | {heads} | {head_dim} | {tail} | " + " | ".join(cells) + " |",
              flush=True)


if __name__ == "__main__":
    main()
