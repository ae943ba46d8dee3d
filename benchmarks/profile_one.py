#!/usr/bin/env python3
"""One attention call of one provider, repeated a few times: the process to run under `ncu`.

    ncu --clock-control none -k regex:Flash --launch-skip 2 --launch-count 1 --set full \\
        python benchmarks/profile_one.py --provider cuteattn --direction fwd --hdim 128 --seqlen 16k \\
        [--config persistent:True,dynamic:True]

With --kernels, the GPU time of each kernel the calls launch (torch.profiler), per call: where the time
of a whole call goes (the main kernel against memsets, preprocess and postprocess), for either provider.

Shapes as in bench.py: 16k tokens, dim 2048, bf16.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--provider", choices=("cuteattn", "fa4"), default="cuteattn")
    p.add_argument("--direction", choices=("fwd", "bwd"), default="fwd")
    p.add_argument("--hdim", type=int, default=128)
    p.add_argument("--seqlen", type=bench.size, default=16384)
    p.add_argument("--causal", action="store_true")
    p.add_argument("--calls", type=int, default=4)
    p.add_argument("--config", default="", help="forward only: fields of the default FwdConfig, e.g. "
                                                 "persistent:True,dynamic:True (sweep_sm90.py's form)")
    p.add_argument("--kernels", action="store_true", help="print each kernel's GPU time per call")
    args = p.parse_args()
    import torch

    case = bench.Case(args.direction, args.hdim, args.causal, args.seqlen, 16384 // args.seqlen, 2048 // args.hdim,
                      "none")
    if args.provider == "fa4":
        prepare = bench.load_fa4()
    else:
        import cuteattn

        from sweep_sm90 import parse_variant

        config = parse_variant("=" + args.config)[1]
        prepare = lambda q, k, v, c: lambda: bench.cuteattn_call(cuteattn, q, k, v, c.causal, config)  # noqa: E731
    q, k, v = bench.make_inputs(case, torch.bfloat16)
    call = prepare(q, k, v, case)

    # The backward alone, as bench.py times it: one forward, then the gradients without accumulating into .grad.
    out = call()
    grad = torch.ones_like(out)
    step = (lambda: torch.autograd.grad(out, (q, k, v), grad, retain_graph=True)) if args.direction == "bwd" else call

    def run():
        for _ in range(args.calls):
            step()
        torch.cuda.synchronize()

    if not args.kernels:
        run()
        return
    run()  # compile and warm up outside the profile
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        run()
    events = [e for e in prof.key_averages() if e.device_type.name == "CUDA" and e.self_device_time_total > 0]
    total = sum(e.self_device_time_total for e in events)
    print(f"{args.provider} {args.direction} hdim {args.hdim} seqlen {args.seqlen} causal {int(args.causal)}: "
          f"{total / args.calls:.1f} us of kernels per call")
    for e in sorted(events, key=lambda e: -e.self_device_time_total):
        print(f"  {e.self_device_time_total / args.calls:9.1f} us  {e.count / args.calls:4.1f}x  {e.key[:100]}")


if __name__ == "__main__":
    main()
