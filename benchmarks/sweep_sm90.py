#!/usr/bin/env python3
"""Variants of the sm90 kernels' configs, timed against FA4 in one run (bf16).

    python benchmarks/sweep_sm90.py [--direction fwd|bwd] [--hdims 64,128] [--hdim-v 128] [--seqlens 1k,16k]
                                    [--variants NAME=KEY:VALUE,...]

Each variant replaces fields of the head dim's default FwdConfig, e.g. `n176=tile_n:176` or
`flat=pingpong:False`, or with --direction bwd of its default BwdConfig (the forward keeps its default).

With --rounds N, each case measures FA4 and every variant N times, the order reversed on odd rounds, and reports
the median: whatever runs first after a pause runs on a cooler GPU (notes-14: FA4, always first, read 722-728
TFLOP/s at hdim 128 4k there against 632-644 in whole-grid runs).
"""

import argparse
import ast
import functools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402

DEFAULT_VARIANTS = ["default=", "no-pingpong=pingpong:False", "n176=tile_n:176", "n192=tile_n:192",
                    "3wg=num_consumers:3", "stages3=num_stages:3"]


def parse_variant(text):
    name, _, body = text.partition("=")
    config = {}
    for item in filter(None, body.split(",")):
        key, _, value = item.partition(":")
        config[key] = ast.literal_eval(value)
    return name, config


def backward_with(config):
    """prepare(q, k, v, case) for the bench harness: the default forward, then the sm90 backward under the
    head dim's default BwdConfig with `config` replaced. A band mask_mod runs as the kernels' window, as it does
    through `flash_attn_func`."""
    import dataclasses

    import torch

    from cuteattn.mods import band
    from cuteattn.reference import Options
    from cuteattn.sm90.backward import backward, default_config
    from cuteattn.sm90.forward import forward

    class Attention(torch.autograd.Function):
        @staticmethod
        def forward(ctx, q, k, v, causal, score_mod, mask_mod):
            ctx.opts = Options(softmax_scale=q.shape[-1] ** -0.5, window_left=None,
                               window_right=0 if causal else None, softcap=0.0, learnable_sink=None,
                               score_mod=score_mod, mask_mod=mask_mod, block_mask=None)
            ctx.opts = band.as_window(ctx.opts, q.shape[1], k.shape[1])
            out, lse = forward(q, k, v, ctx.opts)
            ctx.save_for_backward(q, k, v, out, lse)
            return out

        @staticmethod
        def backward(ctx, dout):
            q, k, v, out, lse = ctx.saved_tensors
            variant = dataclasses.replace(default_config(q.shape[-1], ctx.opts, v.shape[-1]), **config)
            dq, dk, dv, _, _ = backward(q, k, v, out, dout, lse, ctx.opts, config=variant)
            return dq, dk, dv, None, None, None

    def prepare(q, k, v, case):
        mods = bench.variant_mods(case.variant, case.heads, case.seqlen)
        return lambda: Attention.apply(q, k, v, case.causal, *mods)

    return prepare


def forward_with(cuteattn, config):
    """prepare(q, k, v, case): the forward under the head dim's default FwdConfig with `config` replaced; the
    mods (and so a mask_mod's block lists, which cuteattn caches per function) are made once per case."""
    def prepare(q, k, v, case):
        mods = bench.variant_mods(case.variant, case.heads, case.seqlen)
        return lambda: bench.cuteattn_call(cuteattn, q, k, v, case.causal, config, mods)

    return prepare


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--direction", choices=("fwd", "bwd"), default="fwd")
    p.add_argument("--hdims", default="64,128")
    p.add_argument("--hdim-v", type=int, default=0, help="head_dim_v of every case (0: its hdim), e.g. 128 at 192")
    p.add_argument("--seqlens", default="1k,16k")
    p.add_argument("--causal", default="0,1")
    p.add_argument("--variant", choices=bench.VARIANTS, default="none", help="a FlexAttention mod (bench.py's)")
    p.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS)
    p.add_argument("--rep-ms", type=int, default=100)
    p.add_argument("--warmup-ms", type=int, default=bench.WARMUP_MS, help="1000 settles the clocks (bench.Timing)")
    p.add_argument("--rounds", type=int, default=1, help="measurements per cell, alternating the order; the median")
    args = p.parse_args()
    import cuteattn
    import torch

    variants = dict(parse_variant(v) for v in args.variants)
    fa4 = bench.load_fa4()
    rows = []
    for hdim in map(int, args.hdims.split(",")):
        for causal in map(int, args.causal.split(",")):
            for seqlen in bench.sizes(args.seqlens):
                case = bench.Case(args.direction, hdim, bool(causal), seqlen, 16384 // seqlen, 2048 // hdim,
                                  args.variant, args.hdim_v)
                with_config = backward_with if args.direction == "bwd" else functools.partial(forward_with, cuteattn)
                prepares = {"fa4": fa4, **{name: with_config(config) for name, config in variants.items()}}
                # A variant that does not compile or launch is reported, not fatal (no provider here is "cuteattn").
                timing = bench.Timing(args.rep_ms, args.warmup_ms, args.rounds)
                cells = bench.run_all([case], list(prepares), prepares, {}, torch.bfloat16, timing)
                row = {"case": case.label(), **{name: cells[case, name] for name in prepares}}
                rows.append(row)
                print(row["case"], {n: round(c.get("tflops", 0), 1) for n, c in row.items() if n != "case"},
                      flush=True)
    names = ["fa4", *variants]
    print("\n| case | " + " | ".join(names) + " |\n| --- |" + " --- |" * len(names))
    for row in rows:
        cells = [f"{row[n]['tflops']:.1f}" if "tflops" in row[n] else "err" for n in names]
        print(f"| {row['case']} | " + " | ".join(cells) + " |")
    for row in rows:
        for n in names:
            if "error" in row[n]:
                print(f"{row['case']} {n}: {row[n]['error']}")


if __name__ == "__main__":
    main()
