#!/usr/bin/env python3
"""Host time per call on a tiny shape (1 x 128 x 1 x 64, bf16): many calls back to back, one sync; and
before that, the time of cuteattn's first call of a few new configurations (compile and load)."""

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
CALLS = 2000


def per_call_us(fn) -> float:
    for _ in range(10):
        fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(CALLS):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / CALLS * 1e6


def first_call_s(fn) -> float:
    torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - start


def main():
    import cuteattn
    from torch.nn.attention import SDPBackend, sdpa_kernel

    q, k, v = (torch.randn(1, 128, 1, 64, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    q128, k128, v128 = (torch.randn(1, 128, 1, 128, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    print("first call of a new configuration (compile, load, run), seconds:")
    for name, fn in {"hdim 64 causal (the first in the process)": lambda: cuteattn.flash_attn_func(q, k, v, causal=True),
                     "hdim 128": lambda: cuteattn.flash_attn_func(q128, k128, v128),
                     "hdim 128, softcap": lambda: cuteattn.flash_attn_func(q128, k128, v128, softcap=30.0)}.items():
        print(f"  {name:<42} {first_call_s(fn):6.2f}")
    providers = {"cuteattn": lambda: cuteattn.flash_attn_func(q, k, v, causal=True)}
    try:
        from flash_attn.cute import flash_attn_func as fa4

        providers["fa4"] = lambda: fa4(q, k, v, causal=True)
    except ImportError as e:
        print(f"fa4 not importable: {e}")

    def sdpa(backend):
        qt, kt, vt = (t.transpose(1, 2) for t in (q, k, v))

        def run():
            with sdpa_kernel(backend):
                return torch.nn.functional.scaled_dot_product_attention(qt, kt, vt, is_causal=True)
        return run

    providers["sdpa-flash"] = sdpa(SDPBackend.FLASH_ATTENTION)
    providers["sdpa-cudnn"] = sdpa(SDPBackend.CUDNN_ATTENTION)
    print(f"host time per call, {CALLS} calls of (1, 128, 1, 64) bf16 causal, {torch.cuda.get_device_name()}")
    for name, fn in providers.items():
        print(f"  {name:<11} {per_call_us(fn):7.1f} us")


if __name__ == "__main__":
    main()
