#!/usr/bin/env python3
"""The split tail of the sm90 kernels: a launch's last, part-full wave of tiles (forward, num_splits=0) or key
blocks (backward, BwdConfig.tail_split) split among CTAs, against the same launch unsplit and FA4, in one
process. Each round times every provider once per shape, the order reversed on odd rounds; TFLOP/s (the
backward counted as 2.5 forwards) of the median over rounds of do_bench medians. The backward is timed alone,
the forward run once before.

    python benchmarks/split_tail.py [--direction fwd|bwd] [--rounds 5] [--shapes 1x16384x16x128,...] [--parts N]
    (each shape batch x seqlen x heads x hdim, with :seqlen_k where it differs; --parts: split the last wave
    into N parts whatever `tail_parts` chooses, to place its bounds)
"""

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
SHAPES = "1x16384x16x128,2x12288x16x128,1x16384x26x128,1x16384x32x64,1x800x6x128:9000"


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
    p.add_argument("--direction", choices=("fwd", "bwd"), default="fwd")
    p.add_argument("--parts", type=int, default=0, help="the last wave's parts (0: the rule's choice)")
    args = p.parse_args()
    from triton.testing import do_bench

    from cuteattn import reference
    from cuteattn.sm90 import backward, forward
    from cuteattn.tile_scheduler import sm_count

    def options(head_dim):
        return reference.Options(softmax_scale=head_dim ** -0.5, window_left=None, window_right=None, softcap=0.0,
                                 learnable_sink=None, score_mod=None, mask_mod=None, block_mask=None)

    def cute_fwd(q, k, v, tail):
        opts = options(q.shape[-1])
        return lambda: forward.forward(q, k, v, opts, tail=tail)

    def cute_bwd(q, k, v, tail):
        opts = options(q.shape[-1])
        out, lse = forward.forward(q, k, v, opts)
        dout = torch.randn_like(out)
        return lambda: backward.backward(q, k, v, out, dout, lse, opts, tail=tail)

    def fa4_bwd(q, k, v, tail):
        q, k, v = (t.detach().requires_grad_() for t in (q, k, v))
        out = fa4(q, k, v)
        out = out[0] if isinstance(out, tuple) else out
        dout = torch.randn_like(out)
        return lambda: torch.autograd.grad(out, (q, k, v), dout, retain_graph=True)

    try:
        from flash_attn.cute import flash_attn_func as fa4
    except ImportError as e:
        fa4 = None
        print(f"fa4 not importable: {e}")
    cute = cute_fwd if args.direction == "fwd" else cute_bwd
    providers = {"unsplit": lambda q, k, v, tail: cute(q, k, v, (0, 1)), "tail": cute}
    if fa4 is not None:
        providers["fa4"] = (lambda q, k, v, tail: lambda: fa4(q, k, v)) if args.direction == "fwd" else fa4_bwd
    print(f"{torch.cuda.get_device_name()}, {args.direction}, bf16, non-causal, {args.rounds} rounds; TFLOP/s")
    print("| batch | seqlen_q | seqlen_k | heads | hdim | tail (tiles, parts) | " + " | ".join(providers) + " |")
    print("| --- | --- | --- | --- | --- | --- |" + " --- |" * len(providers))
    for batch, seqlen_q, seqlen_k, heads, head_dim in args.shapes:
        q = torch.randn(batch, seqlen_q, heads, head_dim, device="cuda", dtype=torch.bfloat16)
        k, v = (torch.randn(batch, seqlen_k, heads, head_dim, device="cuda", dtype=torch.bfloat16) for _ in range(2))
        opts = options(head_dim)
        if args.direction == "fwd":
            config = forward.default_config(head_dim, opts, seqlen_k)
            tiles = -(-seqlen_q // config.tile_m) * heads * batch
            tail = forward.tail_split(q, k, opts, config, 1, 0)
        else:
            tiles = -(-seqlen_k // backward.TILE_N) * heads * batch
            tail = backward.tail_split(q, k, v, opts, backward.default_config(head_dim, opts), False)
        if args.parts and tiles % sm_count(q.device.index):
            tail = (tiles % sm_count(q.device.index), args.parts)
        flops = 4 * batch * heads * seqlen_q * seqlen_k * head_dim * (2.5 if args.direction == "bwd" else 1)
        times = {name: [] for name in providers}
        calls = {name: prepare(q, k, v, tail) for name, prepare in providers.items()}
        for call in calls.values():
            call()  # compiles, warms caches
        for r in range(args.rounds):
            for name in (list(providers) if r % 2 == 0 else list(providers)[::-1]):
                times[name].append(do_bench(calls[name], warmup=25, rep=args.rep_ms, return_mode="median"))
        cells = [f"{flops / statistics.median(times[name]) / 1e9:.1f}" for name in providers]
        print(f"| {batch} | {seqlen_q} | {seqlen_k} | {heads} | {head_dim} | {tail} | " + " | ".join(cells) + " |",
              flush=True)


if __name__ == "__main__":
    main()
