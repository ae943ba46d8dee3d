#!/usr/bin/env python3
"""How soon the sm90 backward's launch could end under two orders of its key blocks, simulated on the host.

    python benchmarks/launch_order.py [--hdims 128,64] [--seqlens 1k,4k,16k] [--sms 132] [--cta-steps 4]

The hardware hands a launch's CTAs out in block-index order, each to the first SM that frees, one CTA an SM here.
A key block costs its steps (the query blocks it visits, `Window.query_block_range`) and `--cta-steps` more
(loading K and V, storing dK and dV). For each causal case of bench.py's grid (16k tokens, dim 2048) this prints
the end of the launch over the ideal (all steps / SMs) for the plain order (each head's key blocks from the first,
one head after another) and for the kernel's (`FlashBwdSm90.tile_order`: the first key blocks of a group of
heads whose Q and dO share the L2, then their second, and so on). No GPU: an estimate of the tail, not a timing.
"""

import argparse
import heapq
import sys
from pathlib import Path

import cutlass

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402
from cuteattn import reference  # noqa: E402
from cuteattn.masking import Window  # noqa: E402
from cuteattn.sm90.backward import default_config  # noqa: E402
from cuteattn.sm90.bwd_kernel import FlashBwdSm90  # noqa: E402
from cuteattn.tile_scheduler import TileOrder  # noqa: E402


def launch_end(costs: list, sms: int) -> int:
    """When the last CTA ends, the CTAs (their costs in launch order) each taken by the first SM to free."""
    free = [0] * sms
    for cost in costs:
        heapq.heappush(free, heapq.heappop(free) + cost)
    return max(free)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hdims", type=bench.sizes, default=[128, 64])
    p.add_argument("--seqlens", type=bench.sizes, default=[1024, 4096, 16384])
    p.add_argument("--sms", type=int, default=132)
    p.add_argument("--cta-steps", type=int, default=4)
    args = p.parse_args()
    print("hdim seqlen tile_m group | plain / ideal | tile_order / ideal")
    for hdim in args.hdims:
        for seqlen in args.seqlens:
            batch, heads = 16384 // seqlen, 2048 // hdim
            causal = reference.Options(softmax_scale=hdim ** -0.5, window_left=None, window_right=0, softcap=0.0,
                                       learnable_sink=None, score_mod=None, mask_mod=None, block_mask=None)
            config = default_config(hdim, causal)
            kernel = FlashBwdSm90(cutlass.BFloat16, hdim, hdim, 1, has_window_right=True, config=config)
            window = Window.of(seqlen, seqlen, None, 0, False, True)
            n_blocks = -(-seqlen // kernel.tile_n)

            def cost(n_block):
                first, last = n_block * kernel.tile_n, min((n_block + 1) * kernel.tile_n, seqlen) - 1
                m_min, m_max = window.query_block_range(first, last, seqlen, config.tile_m)
                return m_max - m_min + args.cta_steps

            group = kernel.l2_group(seqlen)
            orders = (TileOrder(n_blocks, heads, batch),
                      TileOrder(n_blocks, heads, batch, longest_first=True, group=group, from_last=False))
            ends = [launch_end([cost(order.at(t)[0]) for t in range(order.count())], args.sms) for order in orders]
            ideal = sum(cost(n) for n in range(n_blocks)) * heads * batch / args.sms
            print(f"{hdim} {seqlen} {config.tile_m} {group} | " + " | ".join(f"{end / ideal:.3f}" for end in ends))


if __name__ == "__main__":
    main()
