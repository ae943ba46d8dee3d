"""cuteattn in one page: attention with and without FlexAttention-style mods, checked and timed.

    python examples/quickstart.py

On a machine with a CUDA GPU this runs cuteattn's kernels; with no GPU it runs the PyTorch path on the CPU.
Every result is checked against the textbook computation in fp64.
"""

import math
import statistics
import time

import torch

import cuteattn


def textbook(q, k, v, score_mod=None, mask_mod=None, causal=False):
    """softmax(q k^T / sqrt(d)) v with the full score matrix, in fp64."""
    q, k, v = (t.detach().double().transpose(1, 2) for t in (q, k, v))
    s = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    b, h, i, j = (torch.arange(n, device=s.device).view(*[-1 if d == axis else 1 for d in range(4)])
                  for axis, n in enumerate(s.shape))
    if score_mod is not None:
        s = score_mod(s, b, h, i, j)
    visible = torch.ones(s.shape, dtype=torch.bool, device=s.device)
    if mask_mod is not None:
        visible = visible & mask_mod(b, h, i, j)
    if causal:
        visible = visible & (j <= i + s.shape[-1] - s.shape[-2])
    return torch.softmax(s.masked_fill(~visible, -math.inf), dim=-1).nan_to_num(0.0) @ v


def median_ms(fn, device, runs=10):
    fn()
    times = []
    for _ in range(runs):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main():
    on_gpu = torch.cuda.is_available()
    device = "cuda" if on_gpu else "cpu"
    if on_gpu:
        print(f"GPU: {torch.cuda.get_device_name()}: running cuteattn's kernels")
    else:
        print("No CUDA GPU on this machine: running cuteattn's PyTorch path on the CPU")
    dtype = torch.bfloat16 if on_gpu else torch.float32
    batch, seqlen, heads, head_dim = 2, (2048 if on_gpu else 512), 8, 64
    q, k, v = (torch.randn(batch, seqlen, heads, head_dim, device=device, dtype=dtype) for _ in range(3))

    # A relative-position bias read from a table, and a document mask read from a tensor of ids.
    bias = torch.randn(heads, 2 * seqlen - 1, device=device)
    doc = torch.arange(seqlen, device=device).div(seqlen // 4, rounding_mode="floor").expand(batch, seqlen)

    def rel_bias(score, b, h, q_idx, kv_idx):
        return score + bias[h, q_idx - kv_idx + seqlen - 1]

    def same_doc(b, h, q_idx, kv_idx):
        return doc[b, q_idx] == doc[b, kv_idx]

    cases = {
        "plain": {},
        "causal": dict(causal=True),
        "rel_bias + same_doc + causal": dict(score_mod=rel_bias, mask_mod=same_doc, causal=True),
    }
    print(f"q, k, v: {tuple(q.shape)} {dtype}")
    for name, options in cases.items():
        try:
            out = cuteattn.flash_attn_func(q, k, v, **options)
        except NotImplementedError as err:
            print(f"{name:32s} not run: {err}")
            continue
        want = textbook(q, k, v, **options).transpose(1, 2)
        error = (out.double() - want).abs().max().item()
        ms = median_ms(lambda: cuteattn.flash_attn_func(q, k, v, **options), device)
        print(f"{name:32s} max error vs fp64 {error:.1e}   {ms:8.2f} ms   out[0, 0, 0, :4] = "
              f"{[round(x, 4) for x in out[0, 0, 0, :4].float().tolist()]}")
        assert error < (2e-2 if dtype == torch.bfloat16 else 1e-4), f"{name}: error {error}"


if __name__ == "__main__":
    main()
