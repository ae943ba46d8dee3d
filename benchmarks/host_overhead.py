#!/usr/bin/env python3
"""Host time per call on a tiny shape (1 x 128 x 1 x 64, bf16), three ways: the CPU's time to issue a call
(batches of calls timed before their sync, so the GPU never holds the CPU back), the GPU's time a call (the
calls replayed from a CUDA graph, no host work at all), and calls back to back with one sync at the end (the
slower of the two sets the pace). Before that, the time of cuteattn's first call of a few new configurations
(compile and load)."""

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
CALLS = 2000
BATCH = 100  # calls issued before a sync: far fewer than the launch queue holds, so issuing never waits


def per_call_us(fn) -> float:
    for _ in range(10):
        fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(CALLS):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / CALLS * 1e6


def issue_us(fn) -> float:
    """The median over batches of the CPU's time to issue one call."""
    batches = []
    for _ in range(CALLS // BATCH):
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(BATCH):
            fn()
        batches.append((time.perf_counter() - start) / BATCH * 1e6)
    torch.cuda.synchronize()
    return sorted(batches)[len(batches) // 2]


def gpu_us(fn) -> float:
    """The GPU's time a call: BATCH calls captured in a CUDA graph, the graph replayed."""
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        fn()  # the capture must not be the first call on its stream
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(BATCH):
            fn()
    graph.replay()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(CALLS // BATCH):
        graph.replay()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) * 1e3 / CALLS


def first_call_s(fn) -> float:
    torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - start


class Recorded:
    """A compiled kernel that keeps the arguments of its last call."""

    def __init__(self, compiled):
        self.compiled, self.args = compiled, None

    def __call__(self, *args):
        self.args = args
        return self.compiled(*args)


def parts(q, k, v):
    """Where cuteattn's issue time goes: sm90 `forward.prepared`'s launch function whole; the compiled kernel
    alone (TVM-FFI and the launch), with the arguments of a real call; the two output allocations (as `prepared`
    makes them); and a torch op's launch on the same tensors, for scale."""
    from cuteattn import reference
    from cuteattn.sm90 import forward

    opts = reference.Options(softmax_scale=q.shape[-1] ** -0.5, window_left=None, window_right=0, softcap=0.0,
                             learnable_sink=None, score_mod=None, mask_mod=None, block_mask=None)
    real = forward.get_or_compile
    recorded = []
    forward.get_or_compile = lambda key, fn: recorded.append(Recorded(real(key, fn))) or recorded[-1]
    try:
        run = forward.prepared(q, k, v, opts)
    finally:
        forward.get_or_compile = real
    run(q, k, v)
    kernel = recorded[0]
    exchange = hasattr(torch.Tensor, "__dlpack_c_exchange_api__")
    print(f"cuteattn's issue time in parts, us (torch's C DLPack exchange API: {exchange}):")
    for name, fn in {"forward.prepared's launch function": lambda: run(q, k, v),
                     "the compiled kernel alone (TVM-FFI, launch)": lambda: kernel.compiled(*kernel.args),
                     "the allocations of out and lse": lambda: (q.new_empty(q.shape),
                                                                q.new_empty((1, 1, 128), dtype=torch.float32)),
                     "torch's q.add(1) (a launch of torch's)": lambda: q.add(1)}.items():
        print(f"  {name:<46} {issue_us(fn):7.1f}")


def main():
    import cuteattn
    from torch.nn.attention import SDPBackend, sdpa_kernel

    q, k, v = (torch.randn(1, 128, 1, 64, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    q128, k128, v128 = (torch.randn(1, 128, 1, 128, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    print("first call of a new configuration (compile, load, run), seconds:")
    first_calls = {"hdim 64 causal (the first in the process)": lambda: cuteattn.flash_attn_func(q, k, v, causal=True),
                   "hdim 128": lambda: cuteattn.flash_attn_func(q128, k128, v128),
                   "hdim 128, softcap": lambda: cuteattn.flash_attn_func(q128, k128, v128, softcap=30.0)}
    for name, fn in first_calls.items():
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
    print(f"time per call, (1, 128, 1, 64) bf16 causal, {torch.cuda.get_device_name()}, us: the CPU's to issue it "
          f"(median of {CALLS // BATCH} batches of {BATCH}), the GPU's (from a CUDA graph), {CALLS} back to back")
    for name, fn in providers.items():
        try:
            graph = f"{gpu_us(fn):7.1f}"
        except RuntimeError as e:  # a provider whose call cannot be captured
            graph = f"  n/a ({str(e).splitlines()[0][:60]})"
        print(f"  {name:<11} issue {issue_us(fn):7.1f}   gpu {graph}   back to back {per_call_us(fn):7.1f}")
    parts(q, k, v)


if __name__ == "__main__":
    main()
