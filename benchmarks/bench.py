#!/usr/bin/env python3
"""Attention TFLOP/s of cuteattn and its peers, all measured in the same run.

    python benchmarks/bench.py [--out DIR] [--directions fwd,bwd] [--hdims 64,128] [--causal 0,1]
                               [--seqlens 1k,4k,16k] [--providers cuteattn,fa4,...] [--rounds N] [--dry-run]

Prints one line per cell (with --rounds N, the median of N measurements, the providers' order reversed on odd
rounds), then writes <out>/<date>-<gpu>-bench.{json,md,png} and ends with a
markdown table of TFLOP/s (one column per provider; "n/a" where a provider is missing or fails on a
case). See benchmarks/README.md for what the numbers mean.
"""

from __future__ import annotations

import argparse
import ast
import datetime
import importlib
import importlib.metadata
import itertools
import json
import math
import re
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # measure the checkout's cuteattn, not some installed copy

PROVIDERS = ("cuteattn", "fa4", "fa4-sparse", "sdpa-flash", "sdpa-cudnn", "flex")
DEFAULT_PROVIDERS = ("cuteattn", "fa4", "sdpa-flash", "sdpa-cudnn", "flex")  # fa4-sparse runs two masks only
# Attention variants (--variant): FlexAttention mods, with each provider's own way to run them.
# window: the sliding window through each provider's own window option (flex: its mask_mod).
VARIANTS = ("none", "rel_bias", "alibi", "t5", "sliding_window", "window", "document")
WINDOW = 1024  # sliding_window, window: each query sees itself and the 1024 keys before it
DOCUMENT = 4096  # document: causal attention within documents of 4096 tokens
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
WARMUP_MS = 25
BWD_FLOP_RATIO = 2.5


@dataclass(frozen=True)
class Timing:
    """How a cell is measured: do_bench's timing budget and warm-up before it (ms), and the rounds, the providers'
    order reversed on odd ones, whose median is the cell (benchmarks/README.md: why a 1000 ms warm-up)."""

    rep_ms: int = 100
    warmup_ms: int = WARMUP_MS
    rounds: int = 1


# ---------------------------------------------------------------------------------------------- cases

@dataclass(frozen=True)
class Case:
    direction: str  # "fwd" or "bwd"
    hdim: int
    causal: bool
    seqlen: int
    batch: int
    heads: int
    variant: str = "none"
    hdim_v: int = 0  # 0: hdim

    @property
    def value_dim(self) -> int:
        return self.hdim_v or self.hdim

    def flops(self) -> float:
        if self.variant in ("sliding_window", "window", "document"):  # the visible pairs of the mask
            pairs = variant_pairs(self.variant, self.seqlen)
            fwd = 2 * self.batch * self.heads * pairs * (self.hdim + self.value_dim)
        else:
            fwd = attention_flops(self.batch, self.heads, self.seqlen, self.seqlen, self.hdim, self.value_dim,
                                  self.causal)
        return fwd * BWD_FLOP_RATIO if self.direction == "bwd" else fwd

    def label(self) -> str:
        variant = f" variant={self.variant}" if self.variant != "none" else ""
        variant += f" hdim_v={self.hdim_v}" if self.hdim_v not in (0, self.hdim) else ""
        return (f"{self.direction} hdim={self.hdim} causal={int(self.causal)} seqlen={self.seqlen} "
                f"batch={self.batch} heads={self.heads}{variant}")


def variant_pairs(variant: str, seqlen: int) -> float:
    """Visible (query, key) pairs of a masked variant, the diagonal counted in full."""
    if variant in ("sliding_window", "window"):
        return sum(min(i + 1, WINDOW + 1) for i in range(seqlen))
    docs, last = divmod(seqlen, DOCUMENT)
    return docs * DOCUMENT * (DOCUMENT + 1) / 2 + last * (last + 1) / 2


def variant_mods(variant: str, heads: int, seqlen: int, device="cuda"):
    """(score_mod, mask_mod) of a variant, as a FlexAttention user writes them."""
    if variant == "rel_bias":
        bias = torch.randn(heads, 2 * 255 + 1, device=device)

        def rel_bias(score, b, h, q_idx, kv_idx):
            return score + bias[h, (q_idx - kv_idx).clamp(-255, 255) + 255]
        return rel_bias, None
    if variant == "alibi":  # a position bias without a table: one slope per head
        slope = torch.exp2(-8.0 * torch.arange(1, heads + 1, device=device) / heads)

        def alibi(score, b, h, q_idx, kv_idx):
            return score + slope[h] * (kv_idx - q_idx)
        return alibi, None
    if variant == "t5":  # T5's bidirectional buckets, 8 exact and 8 logarithmic per sign, one table per head
        buckets = torch.randn(32, heads, device=device)

        def t5(score, b, h, q_idx, kv_idx):
            rel = kv_idx - q_idx
            distance = rel.abs()
            far = 8 + (torch.log((distance.float() + 0.5) / 8) / math.log(128 / 8) * 8).to(torch.int32)
            return score + buckets[torch.where(rel > 0, 16, 0) + torch.where(distance < 8, distance, far.clamp(max=15)),
                                   h]
        return t5, None
    if variant in ("sliding_window", "window"):
        def sliding_window(b, h, q_idx, kv_idx):
            return (q_idx >= kv_idx) & (q_idx - kv_idx <= WINDOW)
        return None, sliding_window
    if variant == "document":
        doc = (torch.arange(seqlen, device=device, dtype=torch.int32) // DOCUMENT).view(1, -1)

        def document(b, h, q_idx, kv_idx):
            return (doc[0, q_idx] == doc[0, kv_idx]) & (q_idx >= kv_idx)
        return None, document
    return None, None


def visible_pairs(seqlen_q: int, seqlen_k: int, causal: bool) -> float:
    """(query, key) pairs that are computed; causal (aligned bottom right, as in FlashAttention) counts
    the diagonal block as half, so seqlen_q == seqlen_k gives exactly half of seqlen_q * seqlen_k."""
    if not causal:
        return seqlen_q * seqlen_k
    rows = min(seqlen_q, seqlen_k)  # the queries that see any key
    return rows * (seqlen_k - rows) + rows * rows / 2


def attention_flops(batch, heads, seqlen_q, seqlen_k, hdim, hdim_v, causal) -> float:
    """Forward FLOPs: two matmuls (q k^T and p v), 2 FLOPs per multiply-add."""
    return 2 * batch * heads * visible_pairs(seqlen_q, seqlen_k, causal) * (hdim + hdim_v)


def make_cases(args) -> list[Case]:
    cases = []
    for direction, hdim, causal, seqlen in itertools.product(args.directions, args.hdims, args.causal,
                                                             args.seqlens):
        cases.append(Case(direction, hdim, causal, seqlen, args.total_tokens // seqlen, args.dim // hdim,
                          args.variant))
    return cases


# ------------------------------------------------------------------------------------------ providers
# A loader imports a provider and returns prepare(q, k, v, case) -> run, where run() computes the
# attention output (batch, seqlen, heads, hdim); whatever prepare does is outside the timed region.
# A provider without a way to run a case's variant raises NotImplementedError from prepare.

def cuteattn_call(cuteattn, q, k, v, causal, config, mods=(None, None), window_left=None):
    """The one call into cuteattn: the public API, or, with --config KEY=VALUE pairs, the sm90 forward
    kernel under the head dim's default FwdConfig with those fields replaced (forward only)."""
    if not config:
        return cuteattn.flash_attn_func(q, k, v, causal=causal, window_size=(window_left, None), score_mod=mods[0],
                                        mask_mod=mods[1])
    from cuteattn.reference import Options
    from cuteattn.sm90.forward import default_config, forward

    opts = Options(softmax_scale=q.shape[-1] ** -0.5, window_left=window_left, window_right=0 if causal else None,
                   softcap=0.0, learnable_sink=None, score_mod=mods[0], mask_mod=mods[1], block_mask=None)
    return forward(q, k, v, opts, config=replace(default_config(q.shape[-1], opts, k.shape[1]), **config))[0]


def load_cuteattn(config):
    import cuteattn

    def prepare(q, k, v, case):
        if case.variant == "window":
            return lambda: cuteattn_call(cuteattn, q, k, v, True, config, window_left=WINDOW)
        mods = variant_mods(case.variant, case.heads, case.seqlen)
        return lambda: cuteattn_call(cuteattn, q, k, v, case.causal, config, mods)

    return prepare


def first(out):
    """FA4's output: some versions return (out, lse)."""
    return out[0] if isinstance(out, tuple) else out


def load_fa4():
    """FA4 runs the masked variants its own way: a sliding window natively, documents as varlen sequences."""
    from flash_attn.cute import flash_attn_func, flash_attn_varlen_func

    def prepare(q, k, v, case):
        if case.variant in ("rel_bias", "alibi", "t5"):
            raise NotImplementedError(f"{case.variant} needs a CuTe DSL score_mod written for FA4")
        if case.variant in ("sliding_window", "window"):
            return lambda: first(flash_attn_func(q, k, v, causal=True, window_size=(WINDOW, 0)))
        if case.variant == "document":
            total = case.batch * case.seqlen
            cu = torch.arange(0, total + 1, min(DOCUMENT, case.seqlen), device=q.device, dtype=torch.int32)
            flat = [t.reshape(total, case.heads, t.shape[-1]) for t in (q, k, v)]
            length = min(DOCUMENT, case.seqlen)
            return lambda: first(flash_attn_varlen_func(*flat, cu_seqlens_q=cu, cu_seqlens_k=cu, max_seqlen_q=length,
                                                        max_seqlen_k=length, causal=True)).view(q.shape)
        return lambda: first(flash_attn_func(q, k, v, causal=case.causal))

    return prepare


def load_fa4_sparse():
    """FA4 as issue 5 names it: its mask_mod written in CuTe DSL and its block-sparse tensors built by hand, from
    torch's BlockMask at the 128 x 128 blocks its sm90 kernels take (forward lists per query block, backward per
    key block). With a mask_mod FA4 must be called with causal=False: the mask carries the causality."""
    import cutlass
    import cutlass.cute as cute
    from flash_attn.cute import flash_attn_func
    from flash_attn.cute.block_sparsity import BlockSparseTensorsTorch
    from flash_attn.cute.utils import scalar_to_ssa
    from torch.nn.attention.flex_attention import create_block_mask

    window = WINDOW  # FA4 keys a mask_mod's kernel on its source and its closure's values, not on globals

    @cute.jit
    def sliding_window(batch, head, q_idx, kv_idx, seqlen_info, aux_tensors):
        return (q_idx >= kv_idx) & (q_idx - kv_idx <= scalar_to_ssa(window, cutlass.Int32))

    @cute.jit
    def document(batch, head, q_idx, kv_idx, seqlen_info, aux_tensors):
        doc = aux_tensors[0]
        same = (scalar_to_ssa(doc[batch[0], q_idx[0]], cutlass.Int32)
                == scalar_to_ssa(doc[batch[0], kv_idx[0]], cutlass.Int32))
        return same & (q_idx >= kv_idx)

    cute_masks = {"sliding_window": sliding_window, "document": document}

    def prepare(q, k, v, case):
        if case.variant not in cute_masks:
            raise NotImplementedError(f"{case.variant}: no CuTe DSL mask_mod written for FA4 here")
        _, mask_mod = variant_mods(case.variant, case.heads, case.seqlen)
        lists = create_block_mask(mask_mod, None, None, case.seqlen, case.seqlen, device=q.device,
                                  BLOCK_SIZE=(128, 128)).as_tuple()
        fwd, bwd = (BlockSparseTensorsTorch(*(t.to(torch.int32).contiguous() for t in lists[i:i + 4]),
                                            block_size=(128, 128)) for i in (2, 6))
        aux = None
        if case.variant == "document":
            doc = torch.arange(case.seqlen, device=q.device, dtype=torch.int32) // DOCUMENT
            aux = [doc.repeat(case.batch, 1)]
        return lambda: first(flash_attn_func(q, k, v, causal=False, mask_mod=cute_masks[case.variant],
                                             aux_tensors=aux, block_sparse_tensors=fwd, block_sparse_tensors_bwd=bwd))

    return prepare


def bhsd(t):
    """(batch, seqlen, heads, dim) <-> (batch, heads, seqlen, dim), as a view."""
    return t.transpose(1, 2)


def load_sdpa(backend_name):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backend = getattr(SDPBackend, backend_name)

    def prepare(q, k, v, case):
        if case.variant != "none":
            raise NotImplementedError(f"{case.variant} is not an SDPA option")

        def run():
            with sdpa_kernel(backend):
                return bhsd(F.scaled_dot_product_attention(bhsd(q), bhsd(k), bhsd(v), is_causal=case.causal))
        return run

    return prepare


def causal_mask(b, h, q_idx, kv_idx):
    return q_idx >= kv_idx


def load_flex():
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    # Every (shape, mask) case is one more compile of the same function: keep them all compiled,
    # rather than falling back to eager (and its slow numbers) past dynamo's default limit of 8.
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 256)
    compiled = torch.compile(flex_attention, dynamic=False)

    def prepare(q, k, v, case):
        score_mod, mask_mod = variant_mods(case.variant, case.heads, case.seqlen)
        if case.causal and mask_mod is None:
            mask_mod = causal_mask
        mask = (create_block_mask(mask_mod, None, None, q.shape[1], k.shape[1], device=q.device)
                if mask_mod is not None else None)
        return lambda: bhsd(compiled(bhsd(q), bhsd(k), bhsd(v), score_mod=score_mod, block_mask=mask))

    return prepare


def load_providers(names, config):
    """({name: prepare} for the importable providers, {name: reason} for the others)."""
    loaders = {
        "cuteattn": lambda: load_cuteattn(config),
        "fa4": load_fa4,
        "fa4-sparse": load_fa4_sparse,
        "sdpa-flash": lambda: load_sdpa("FLASH_ATTENTION"),
        "sdpa-cudnn": lambda: load_sdpa("CUDNN_ATTENTION"),
        "flex": load_flex,
    }
    loaded, unavailable = {}, {}
    for name in names:
        try:
            loaded[name] = loaders[name]()
        except Exception as e:  # an ImportError, or an import that fails deeper down (CUDA, cutlass)
            unavailable[name] = f"not importable: {one_line(e)}"
    return loaded, unavailable


# ------------------------------------------------------------------------------------------ measuring

def one_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0] if lines else ''}"


def make_inputs(case: Case, dtype):
    shape = (case.batch, case.seqlen, case.heads)
    grad = case.direction == "bwd"
    return [torch.randn(*shape, d, device="cuda", dtype=dtype, requires_grad=grad)
            for d in (case.hdim, case.hdim, case.value_dim)]


def median_ms(case: Case, prepare, dtype, timing: Timing) -> float:
    """do_bench's median time of the forward, or of the backward pass alone (the forward runs once)."""
    from triton.testing import do_bench

    q, k, v = make_inputs(case, dtype)
    fn = prepare(q, k, v, case)
    if case.direction == "bwd":
        out = fn()
        grad = torch.randn_like(out)
        fn = lambda: torch.autograd.grad(out, (q, k, v), grad, retain_graph=True)  # noqa: E731
    fn()  # compiles, autotunes, warms caches
    torch.cuda.synchronize()
    return do_bench(fn, warmup=timing.warmup_ms, rep=timing.rep_ms, return_mode="median")


def measure_cell(name, case, prepare, dtype, timing: Timing) -> dict:
    """{'ms', 'tflops'}, or {'error'} when the provider fails on the case. cuteattn may fail only with
    NotImplementedError (a missing kernel); any other exception of it propagates."""
    try:
        ms = median_ms(case, prepare, dtype, timing)
    except Exception as e:
        if name == "cuteattn" and not isinstance(e, NotImplementedError):
            raise
        return {"error": one_line(e)}
    return {"ms": ms, "tflops": tflops(case, ms)}


def tflops(case: Case, ms: float) -> float:
    return case.flops() / (ms * 1e-3) / 1e12


def run_all(cases, names, loaded, unavailable, dtype, timing: Timing) -> dict:
    """{(case, name): cell} for every case and provider, printing one line per cell and each provider's
    distinct failure reasons once. With rounds > 1 each case measures every provider `rounds` times, the order
    reversed on odd rounds (whatever runs first after a pause runs on a cooler GPU), and a cell is the median
    round, with every round's ms under 'rounds'."""
    cells, reported = {}, set()
    for case in cases:
        runs = {name: [] for name in names}
        for r in range(timing.rounds):
            for name in (names if r % 2 == 0 else names[::-1]):
                runs[name].append(measure_cell(name, case, loaded[name], dtype, timing) if name in loaded
                                  else {"error": unavailable[name]})
        for name in names:
            cell = cells[case, name] = median_cell(case, runs[name])
            if "error" in cell:
                if (name, cell["error"]) not in reported:
                    reported.add((name, cell["error"]))
                    print(f"  {name}: n/a ({cell['error']})")
                print(f"{case.label()} | {name:<10} n/a")
            else:
                spread = (f" (rounds {min(cell['rounds']):.3f}-{max(cell['rounds']):.3f} ms)" if timing.rounds > 1
                          else "")
                print(f"{case.label()} | {name:<10} {cell['ms']:9.3f} ms {cell['tflops']:7.1f} TFLOP/s{spread}")
    return cells


def median_cell(case: Case, measured: list) -> dict:
    """The median time of the rounds that ran, or the first failure; with several rounds, their times too, in the
    order measured."""
    times = [c["ms"] for c in measured if "ms" in c]
    if not times:
        return measured[0]
    ms = statistics.median(times)
    cell = {"ms": ms, "tflops": tflops(case, ms)}
    return {**cell, "rounds": times} if len(measured) > 1 else cell


# ---------------------------------------------------------------------------------------- reporting

def dist_version(dist):
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def module_version(module):
    try:
        return importlib.import_module(module).__version__
    except Exception:
        return None


def git_revision():
    """The checkout's commit, with '+dirty' for local changes; None outside a git checkout."""
    def git(*cmd):
        return subprocess.run(["git", "-C", str(REPO), *cmd], capture_output=True, text=True)
    head = git("rev-parse", "--short", "HEAD")
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+dirty" if git("status", "--porcelain").stdout.strip() else "")


def metadata(args) -> dict:
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "gpu": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "triton": dist_version("triton"),
        "cuteattn": module_version("cuteattn"),
        "flash_attn_4": dist_version("flash-attn-4"),
        "git": git_revision(),
        "dtype": args.dtype,
        "rep_ms": args.rep_ms,
        "warmup_ms": args.warmup_ms,
        "rounds": args.rounds,
        "total_tokens": args.total_tokens,
        "dim": args.dim,
        "config": args.config,
        "argv": sys.argv[1:],
    }


def gpu_slug(name: str) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'h100': the words of the name up to the first with a digit."""
    words = [w for w in name.split() if w.lower() not in ("nvidia", "geforce")]
    upto = next((i for i, w in enumerate(words) if any(ch.isdigit() for ch in w)), len(words) - 1)
    return re.sub(r"[^a-z0-9]+", "-", "-".join(words[:upto + 1]).lower()).strip("-") or "gpu"


def markdown_table(cases, names, cells) -> str:
    header = ["direction", "hdim", "causal", "seqlen", "batch", "heads", *names]
    rows = [header, ["---"] * len(header)]
    for c in cases:
        tflops = [f"{cells[c, n]['tflops']:.1f}" if "tflops" in cells[c, n] else "n/a" for n in names]
        rows.append([c.direction, str(c.hdim), str(int(c.causal)), str(c.seqlen), str(c.batch), str(c.heads),
                     *tflops])
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def records(cases, names, cells) -> list[dict]:
    return [{"provider": n, **asdict(c), "flop": c.flops(), **cells[c, n]} for c in cases for n in names]


def seqlen_label(seqlen: int) -> str:
    return f"{seqlen // 1024}k" if seqlen % 1024 == 0 else str(seqlen)


def plot(path, cases, names, cells, title):
    """TFLOP/s against seqlen: one subplot per (direction, hdim, causal), one line per provider."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(dict.fromkeys((c.direction, c.hdim, c.causal) for c in cases))
    ncols = min(4, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.4 * nrows), squeeze=False)
    for ax, (direction, hdim, causal) in zip(axes.flat, panels):
        panel = sorted((c for c in cases if (c.direction, c.hdim, c.causal) == (direction, hdim, causal)),
                       key=lambda c: c.seqlen)
        seqlens = [c.seqlen for c in panel]
        for name in names:
            ax.plot(seqlens, [cells[c, name].get("tflops", math.nan) for c in panel], marker="o", label=name)
        ax.set_xscale("log", base=2)
        ax.set_xticks(seqlens, [seqlen_label(s) for s in seqlens])
        ax.minorticks_off()
        ax.set_ylim(bottom=0)
        ax.set_title(f"{direction} hdim {hdim} {'causal' if causal else 'non-causal'}")
        ax.set_xlabel("seqlen")
        ax.set_ylabel("TFLOP/s")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="lower center", ncol=len(names))
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_results(out_dir: Path, meta, cases, names, cells, table) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"{meta['date'][:10]}-{gpu_slug(meta['gpu'])}-bench"
    json_path, md_path, png_path = (stem.with_suffix(s) for s in (".json", ".md", ".png"))
    json_path.write_text(json.dumps({"metadata": meta, "results": records(cases, names, cells)}, indent=1) + "\n")
    md_path.write_text(f"# Attention TFLOP/s, {meta['gpu']}, {meta['date']}\n\n"
                       f"torch {meta['torch']}, CUDA {meta['cuda']}, cuteattn {meta['cuteattn']} "
                       f"(git {meta['git']}), flash-attn-4 {meta['flash_attn_4']}, {meta['dtype']}; "
                       f"config {meta['config'] or '{}'}; {meta['rounds']} round(s) a cell, the median; do_bench's "
                       f"warm-up {meta['warmup_ms']} ms\n\n{table}\n")
    try:
        plot(png_path, cases, names, cells, f"{meta['gpu']}, {meta['dtype']}, {meta['date'][:10]}")
    except ImportError as e:
        print(f"no plot: {one_line(e)}")
        return [json_path, md_path]
    return [json_path, md_path, png_path]


# ------------------------------------------------------------------------------------------------ cli

def size(text: str) -> int:
    """'4k' -> 4096, '4096' -> 4096."""
    return int(text[:-1]) * 1024 if text.lower().endswith("k") else int(text)


def sizes(text: str) -> list[int]:
    return [size(s) for s in text.split(",")]


def choices_list(allowed):
    def parse(text: str) -> list[str]:
        items = text.split(",")
        bad = [x for x in items if x not in allowed]
        if bad:
            raise argparse.ArgumentTypeError(f"{','.join(bad)} not in {','.join(allowed)}")
        return items
    return parse


def causal_list(text: str) -> list[bool]:
    return [bool(int(x)) for x in choices_list(("0", "1"))(text)]


def config_pair(text: str):
    """'KEY=VALUE' -> (KEY, VALUE), VALUE read as a Python literal (128, True, 'x') or else kept as text."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--directions", type=choices_list(("fwd", "bwd")), default=["fwd", "bwd"], help="default fwd,bwd")
    p.add_argument("--hdims", type=sizes, default=[64, 128], help="head dims (q, k and v); default 64,128")
    p.add_argument("--causal", type=causal_list, default=[False, True], help="default 0,1")
    p.add_argument("--seqlens", type=sizes, default=[1024, 4096, 16384], help="default 1k,4k,16k")
    p.add_argument("--providers", type=choices_list(PROVIDERS), default=list(DEFAULT_PROVIDERS),
                   help=f"of {','.join(PROVIDERS)}; default {','.join(DEFAULT_PROVIDERS)}")
    p.add_argument("--total-tokens", type=size, default=16384, metavar="N",
                   help="batch = N // seqlen; default 16k")
    p.add_argument("--dim", type=int, default=2048, help="model dim: heads = dim // hdim; default 2048")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    p.add_argument("--variant", choices=VARIANTS, default="none",
                   help="rel_bias, alibi or t5 (score_mods), sliding_window or document (mask_mods); default none")
    p.add_argument("--rep-ms", type=int, default=100, help="do_bench's timing budget per measurement, ms")
    p.add_argument("--warmup-ms", type=int, default=WARMUP_MS,
                   help=f"do_bench's warm-up before each measurement, ms; 1000 settles the clocks (Timing); "
                        f"default {WARMUP_MS}")
    p.add_argument("--rounds", type=int, default=1,
                   help="measurements per cell, the providers' order reversed on odd rounds; the median; default 1")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results", help="results directory")
    p.add_argument("--config", type=config_pair, nargs="+", default=[], metavar="KEY=VALUE",
                   help="passed to cuteattn's kernel config (see cuteattn_call)")
    p.add_argument("--dry-run", action="store_true",
                   help="list the cases and the importable providers; measure nothing")
    args = p.parse_args(argv)
    args.config = dict(args.config)
    for hdim in args.hdims:
        if args.dim % hdim:
            p.error(f"--dim {args.dim} is not a multiple of hdim {hdim}")
    for seqlen in args.seqlens:
        if seqlen > args.total_tokens:
            p.error(f"seqlen {seqlen} is more than --total-tokens {args.total_tokens}")
    return args


def main(argv=None):
    args = parse_args(argv)
    cases = make_cases(args)
    names = args.providers
    loaded, unavailable = load_providers(names, args.config)
    for name in names:
        print(f"provider {name:<10} {'available' if name in loaded else unavailable[name]}")
    if args.config:
        print(f"cuteattn config: {args.config}")
    if args.dry_run:
        print(f"cuda: {torch.cuda.get_device_name() if torch.cuda.is_available() else 'not available'}")
        for case in cases:
            print(f"case {case.label()} | {case.flops() / 1e9:.1f} GFLOP")
        print(f"{len(cases)} cases x {len(names)} providers; dry run, nothing measured")
        return
    if not torch.cuda.is_available():
        sys.exit("bench.py: no CUDA device (use --dry-run to list the cases)")
    torch.manual_seed(0)
    cells = run_all(cases, names, loaded, unavailable, DTYPES[args.dtype],
                    Timing(args.rep_ms, args.warmup_ms, args.rounds))
    meta = metadata(args)
    table = markdown_table(cases, names, cells)
    for path in write_results(args.out, meta, cases, names, cells, table):
        print(f"wrote {path}")
    rounds = f", the median of {args.rounds} rounds" if args.rounds > 1 else ""
    print(f"\nTFLOP/s ({meta['gpu']}, {args.dtype}, median of do_bench{rounds}; causal counts half the pairs, "
          f"bwd {BWD_FLOP_RATIO}x fwd)\n")
    print(table)


if __name__ == "__main__":
    main()
