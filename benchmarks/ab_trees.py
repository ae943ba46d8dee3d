#!/usr/bin/env python3
"""Two trees of cuteattn timed in one process: the checkout's (new) and another's (old), FA4 optionally beside.

    git archive <rev> cuteattn | tar x -C _trees/old       # on the CPU machine; carry _trees to the GPU one
    python benchmarks/ab_trees.py --old _trees/old --cases fwd:128:0:16k bwd:64:1:4k [--rounds 9] [--fa4]

The old tree's package is imported from a copy renamed `cuteattn_old`. Each round measures every provider once,
the order reversed on odd rounds, so a GPU that warms or cools during the run weighs on both trees alike (whole
grids run one after another moved a cell by 8%: notes-14). A figure is the median over rounds of do_bench
medians. A case is direction:hdim:causal:seqlen with bench.py's shapes (16k tokens, dim 2048, bf16).
"""

import argparse
import importlib
import os
import re
import shutil
import statistics
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402

OLD = "cuteattn_old"


def import_renamed(tree: Path, scratch: Path):
    """The `cuteattn` package under `tree`, copied into `scratch` as `cuteattn_old` and imported."""
    copy = scratch / OLD
    shutil.copytree(tree / "cuteattn", copy, ignore=shutil.ignore_patterns("__pycache__"))
    for source in copy.rglob("*.py"):
        source.write_text(re.sub(r"\bcuteattn\b", OLD, source.read_text()))
    sys.path.insert(0, str(scratch))
    return importlib.import_module(OLD)


def timed_calls(case, q, k, v, providers: dict) -> dict:
    """name -> a call to time: the forward, or the backward of a forward run once."""
    import torch

    calls = {}
    for name, call in providers.items():
        if case.direction == "bwd":
            out = call()
            grad = torch.randn_like(out)
            call = (lambda out=out, grad=grad: torch.autograd.grad(out, (q, k, v), grad, retain_graph=True))
        calls[name] = call
    return calls


def hang_watchdog(spec: str, seconds: float) -> threading.Timer:
    """A started timer that, unless cancelled, says which case hung and ends the process: a kernel whose
    pipeline is out of step never returns, and would hold the GPU call until its limit."""
    def expire():
        print(f"{spec:<22} still running after {seconds:.0f} s: a hung kernel", flush=True)
        os._exit(70)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    return timer


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--old", type=Path, required=True, help="a directory holding the old tree's cuteattn package")
    p.add_argument("--cases", nargs="+", required=True, metavar="DIR:HDIM:CAUSAL:SEQLEN")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--rep-ms", type=int, default=60)
    p.add_argument("--fa4", action="store_true", help="FA4 in the same rounds")
    p.add_argument("--case-seconds", type=float, default=120,
                   help="a case still running after this long has a hung kernel: name it and exit")
    args = p.parse_args()
    import torch
    from triton.testing import do_bench

    import cuteattn

    with tempfile.TemporaryDirectory() as scratch:
        trees = {"new": cuteattn, "old": import_renamed(args.old, Path(scratch))}
        fa4 = bench.load_fa4() if args.fa4 else None
        names = ["new", "old"] + (["fa4"] if fa4 else [])
        print(f"{'case':<22} " + " ".join(f"{n:>8}" for n in names) + "   new/old")
        for spec in args.cases:
            watchdog = hang_watchdog(spec, args.case_seconds)
            direction, hdim, causal, seqlen = spec.split(":")
            hdim, causal, seqlen = int(hdim), causal == "1", bench.size(seqlen)
            case = bench.Case(direction, hdim, causal, seqlen, 16384 // seqlen, 2048 // hdim, "none")
            q, k, v = bench.make_inputs(case, torch.bfloat16)
            providers = {name: (lambda m=m: bench.cuteattn_call(m, q, k, v, causal, None)) for name, m in trees.items()}
            if fa4:
                providers["fa4"] = fa4(q, k, v, case)
            calls = timed_calls(case, q, k, v, providers)
            for call in calls.values():  # compiles
                call()
            torch.cuda.synchronize()
            times = {name: [] for name in calls}
            for r in range(args.rounds):
                for name in (names if r % 2 == 0 else names[::-1]):
                    times[name].append(do_bench(calls[name], warmup=25, rep=args.rep_ms, return_mode="median"))
            rate = {name: case.flops() / (statistics.median(t) * 1e-3) / 1e12 for name, t in times.items()}
            print(f"{spec:<22} " + " ".join(f"{rate[n]:8.1f}" for n in names) + f"   {rate['new'] / rate['old']:.3f}",
                  flush=True)
            watchdog.cancel()


if __name__ == "__main__":
    main()
