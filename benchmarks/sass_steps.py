#!/usr/bin/env python3
"""Instructions per mainloop step of an sm90 kernel, from its SASS, with no GPU: each innermost loop that issues
wgmmas, with its opcode counts (what one warp issues per key block, forward, or query block, backward). A
loop that branches between a masked and an unmasked step (`masked_loop=False`) counts both branches.

    python benchmarks/sass_steps.py fwd 128 --causal [--config tile_n=128,masked_loop=False] [--variant document]
                                    [--window 1024] [--fa4] [--flow]

--flow prints the order of the largest step: its GEMMs (a run of wgmmas as its first), waits on them, barriers,
fences and shared-memory traffic, each with the scoreboards it waits for (`cuteattn.sass.Control`): where a GEMM's
issue waits for loads, or ptxas has added a wait of its own (advisory C7517).

--fa4 compiles FA4's kernel for the same case too, through its own CPU path (fake tensors), where
`flash_attn.cute` imports: install its wheel (GPU bundle, `peers/`) into a scratch folder on PYTHONPATH. Nothing
of it is part of this repository.
"""

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from cuteattn.sass import INSTRUCTION, address, controls, innermost_loop_bodies, innermost_loops, opcodes  # noqa: E402

FLOW = ("HGMMA", "WARPGROUP", "BAR", "SYNCS", "MEMBAR", "FENCE", "LDS", "STS", "STSM")
SHOWN = ("S2R", "S2UR", "HGMMA", "MUFU", "FFMA", "FMUL", "FADD", "FMNMX", "F2FP", "FSEL", "ISETP", "IMAD", "R2UR",
         "UIADD3", "UMOV", "SHFL", "BAR", "SYNCS", "STSM", "LDS", "STS", "STL", "LDL")

OURS = """
import sys, torch
from dataclasses import replace
sys.path.insert(0, "benchmarks")
from bench import variant_mods
from cuteattn import reference
from cuteattn.sm90 import backward, forward
direction, head_dim, causal, config = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", eval(sys.argv[4])
score_mod, mask_mod = variant_mods(sys.argv[5], 2048 // head_dim, 16384, device="cpu")
window_left = int(sys.argv[6]) if sys.argv[6] != "None" else None
opts = reference.Options(softmax_scale=1.0, window_left=window_left,
                         window_right=0 if causal or window_left is not None else None, softcap=0.0,
                         learnable_sink=None, score_mod=score_mod, mask_mod=mask_mod, block_mask=None)
if mask_mod is not None:  # the kernel a call runs: a band of the mask_mod becomes the window (`band.as_window`)
    from cuteattn.mods import band
    opts = band.as_window(opts, 16384, 16384)
side = forward if direction == "fwd" else backward
seqlen_k = (1024,) if direction == "fwd" else ()  # the case of FA4's, below
cfg = replace(side.default_config(head_dim, opts, *seqlen_k), **config)
kernel = (forward.kernel_for(torch.bfloat16, head_dim, head_dim, 1, opts, config=cfg) if direction == "fwd" else
          backward.kernel_for(torch.bfloat16, head_dim, head_dim, 1, opts, config=cfg))
side._compile(kernel)
"""

# FA4 on a machine without a GPU or triton: its interface imports quack's autotuner, which needs triton.
FA4 = """
import os, sys, types
autotuner = types.ModuleType("quack.autotuner")
autotuner.autotune = lambda *a, **k: (lambda f: f)
autotuner.AutotuneConfig = type("AutotuneConfig", (), {"__init__": lambda self, *a, **k: None})
sys.modules["quack.autotuner"] = autotuner
os.environ.setdefault("FLASH_ATTENTION_ARCH", "sm_90")
os.environ.setdefault("FLASH_ATTENTION_NUM_SMS", "132")
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
import cutlass.cute as cute
compile_ = cute.compile
class Compile:  # the CPU machine has no TVM-FFI runtime for the cp312 wheel: compile without it
    def __call__(self, *args, options=None, **kwargs):
        options = (options or "").replace("--enable-tvm-ffi", "").strip()
        return compile_(*args, options=options, **kwargs) if options else compile_(*args, **kwargs)
    def __getitem__(self, item):
        return compile_[item]
cute.compile = Compile()
import flash_attn.cute.interface as fa4
direction, head_dim, causal = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
window = (int(sys.argv[4]), 0) if sys.argv[4] != "None" else (None, None)
causal = causal or window[0] is not None
with FakeTensorMode():
    q = torch.empty(16, 1024, 2048 // head_dim, head_dim, dtype=torch.bfloat16, device="cuda")
    k, v = torch.empty_like(q), torch.empty_like(q)
    if direction == "fwd":
        fa4._flash_attn_fwd(q, k, v, causal=causal, window_size_left=window[0],
                            window_size_right=window[1])
    else:
        lse = torch.empty(16, 2048 // head_dim, 1024, dtype=torch.float32, device="cuda")
        fa4._flash_attn_bwd(q, k, v, torch.empty_like(q), torch.empty_like(q), lse, causal=causal,
                            window_size_left=window[0], window_size_right=window[1])
"""


def compiled_sass(build: str, args: list, name_part: str, flow: bool) -> tuple:
    """(SASS, {address: Control} with `flow`, else None) of the kernel whose file name holds `name_part`, compiled
    by `build` in a fresh process."""
    with tempfile.TemporaryDirectory() as dump:
        env = {**os.environ, "CUTE_DSL_ARCH": "sm_90a", "CUTE_DSL_KEEP": "sass", "CUTE_DSL_DUMP_DIR": dump}
        result = subprocess.run([sys.executable, "-c", build, *args], cwd=REPO_ROOT, env=env, capture_output=True,
                                text=True, timeout=900)
        if result.returncode != 0:
            sys.exit(f"compile failed:\n{result.stderr[-3000:]}")
        files = [f for f in Path(dump).glob("*.sass") if name_part in f.name]
        if len(files) != 1:
            sys.exit(f"expected one SASS file holding {name_part!r}, found {[f.name for f in files]}")
        control = controls(str(next(Path(dump).glob(files[0].stem + "*.cubin")))) if flow else None
        return files[0].read_text(), control


def report(title: str, sass: str, control: Optional[dict]):
    total = opcodes(sass)
    print(f"{title}: {sum(total.values())} instructions, {total['STL']} STL / {total['LDL']} LDL")
    for loop in innermost_loops(sass):
        if loop["HGMMA"]:
            print(f"  step: {sum(loop.values())} | " + " ".join(f"{op} {loop[op]}" for op in SHOWN if loop[op]))
    if control is not None:
        print_flow(max(innermost_loop_bodies(sass), key=lambda lines: sum("HGMMA" in line for line in lines)),
                   control)


def print_flow(lines: list, control: dict):
    """The step's order: FLOW's opcodes and branches, a run of one opcode (other instructions between) as its
    first, its length and every scoreboard the run waits for."""
    runs = []  # [opcode, first line's text, address, count, waits]
    for line in lines:
        text = line.split(";")[0].split("*/")[-1].strip()
        opcode = INSTRUCTION.match(line).group(1)
        if opcode not in FLOW and opcode != "BRA":
            continue
        waits = set(control[address(line)].waits)
        if runs and runs[-1][0] == opcode and opcode != "BRA":
            runs[-1][3] += 1
            runs[-1][4] |= waits
        else:
            runs.append([opcode, text, address(line), 1, waits])
    for opcode, text, at, count, waits in runs:
        waited = "waits " + ",".join(map(str, sorted(waits))) if waits else ""
        print(f"  {at:5x} {waited:13} {text[:72]}" + (f"  (x{count})" if count > 1 else ""))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("direction", choices=("fwd", "bwd"))
    parser.add_argument("head_dim", type=int)
    parser.add_argument("--causal", action="store_true")
    parser.add_argument("--config", default="", help="fields of the default config, e.g. tile_n=128,masked_loop=False")
    parser.add_argument("--variant", default="none", help="a mod of bench.py's, e.g. rel_bias or document")
    parser.add_argument("--window", type=int, default=None, metavar="LEFT",
                        help="a causal sliding window of LEFT keys before the diagonal (window_size (LEFT, 0))")
    parser.add_argument("--fa4", action="store_true")
    parser.add_argument("--flow", action="store_true", help="the order of the largest step, with its waits")
    args = parser.parse_args()
    config = {key: eval(value) for key, value in (item.split("=") for item in args.config.split(",") if item)}
    case = [args.direction, str(args.head_dim), str(int(args.causal))]
    ours = "FlashFwd" if args.direction == "fwd" else "FlashBwd"
    report("cuteattn", *compiled_sass(OURS, case + [repr(config), args.variant, str(args.window)], ours, args.flow))
    if args.fa4:
        name = "flash_fwd_sm90" if args.direction == "fwd" else "flash_bwd_sm90"
        report("FA4", *compiled_sass(FA4, case + [str(args.window)], name, args.flow))


if __name__ == "__main__":
    main()
