#!/usr/bin/env python3
"""The Python part of an sm90 forward call's host time, on any machine: CPU tensors go down the GPU path
with the compiled kernel replaced by a no-op (found in the compile cache as usual), so what is timed is the
entry's checks, options, kernel lookup and argument packing (the GPU machine's `host_overhead.py` adds the
TVM-FFI call and the launch).

    python benchmarks/host_python.py [--profile]
"""

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
CALLS = 5000


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", action="store_true", help="also print cProfile's top functions")
    args = p.parse_args()
    import cuteattn
    from cuteattn import interface
    from cuteattn.sm90 import forward

    interface.select_backend = lambda fn, device: "sm90"
    forward._compile = lambda op: (lambda *kernel_args: None)
    forward.sm_count = lambda device_index: 132
    counter = torch.zeros(1, dtype=torch.int32)
    forward.tile_counter = lambda device: counter  # the stream lookup needs CUDA: timed by host_overhead.py
    q, k, v = (torch.randn(1, 128, 1, 64, dtype=torch.bfloat16) for _ in range(3))

    def call():
        return cuteattn.flash_attn_func(q, k, v, causal=True)

    for _ in range(100):
        call()
    start = time.perf_counter()
    for _ in range(CALLS):
        call()
    print(f"Python time per call, (1, 128, 1, 64) bf16 causal, launch stubbed: "
          f"{(time.perf_counter() - start) / CALLS * 1e6:.1f} us")
    if args.profile:
        import cProfile
        import pstats

        profile = cProfile.Profile()
        profile.runcall(lambda: [call() for _ in range(CALLS)])
        pstats.Stats(profile).sort_stats("tottime").print_stats(20)


if __name__ == "__main__":
    main()
