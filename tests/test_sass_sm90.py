"""Check the SASS of the sm90 forward's and backward's main configs, with no GPU: Hopper warpgroup MMAs, no
register spills; and the backward's dQ added by the copy engine (one bulk reduction), not by atomics.

Each config compiles in a fresh process with CUTE_DSL_KEEP=sass, which makes the DSL keep the cubin and
disassemble it with nvdisasm (the nvidia-cuda-nvdisasm wheel of the `test` extra) into CUTE_DSL_DUMP_DIR.
"""

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from cuteattn.sass import innermost_loops, opcodes

REPO_ROOT = Path(__file__).resolve().parent.parent

BUILD = """
import sys, torch
sys.path.insert(0, "examples")
from gallery import gallery
from cuteattn import reference
from cuteattn.sm90 import backward, forward
from cuteattn.sm90.bwd_config import BwdConfig
direction, head_dim, causal, config, mod = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "causal", *sys.argv[4:]
score_mod = gallery(1, 16, 1024, 1024, device="cpu")[mod][0] if mod else None
opts = reference.Options(softmax_scale=1.0, window_left=None, window_right=0 if causal else None, softcap=0.0,
                         learnable_sink=None, score_mod=score_mod, mask_mod=None, block_mask=None)
if direction == "fwd":
    forward._compile(forward.kernel_for(torch.bfloat16, head_dim, head_dim, 1, opts, **eval(config or "{}")))
else:
    keywords = eval(config or "{}")
    tail_splits = keywords.pop("tail_splits", 1)
    backward._compile(backward.kernel_for(torch.bfloat16, head_dim, head_dim, 1, opts,
                                          config=BwdConfig(**keywords) if keywords else None, tail_splits=tail_splits))
"""


def compile_sass(direction: str, head_dim: int, mask: str, tmp_path, config: str = "", mod: str = "") -> str:
    """The SASS of one kernel, compiled in a fresh process; `config`: BwdConfig keywords (forward: `kernel_for`'s),
    as a dict literal;
    `mod`: the name of a score_mod of the gallery (`examples/gallery.py`)."""
    env = {**os.environ, "CUTE_DSL_ARCH": "sm_90a", "CUTE_DSL_KEEP": "sass", "CUTE_DSL_DUMP_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", BUILD, direction, str(head_dim), mask, config, mod],
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"compile failed:\n{result.stderr}"
    sass_files = list(tmp_path.glob("*.sass"))
    assert len(sass_files) == 1, f"expected one SASS file in the dump dir, found {sass_files}"
    return sass_files[0].read_text()


def sass_of(direction: str, head_dim: int, mask: str, tmp_path, config: str = "", spills: int = 0,
            sass: str = "") -> Counter:
    """Opcode counts of one kernel's SASS (`sass`, or compiled here); `spills`: how many local stores (and as
    many loads) the kernel may have."""
    counts = opcodes(sass or compile_sass(direction, head_dim, mask, tmp_path, config))
    assert counts["HGMMA"] > 0, f"no HGMMA in the SASS; opcodes found: {dict(counts)}"
    local = {op: counts[op] for op in ("STL", "LDL") if counts[op] > spills}
    assert not local, f"local-memory traffic (register spills) beyond {spills}: {local}"
    return counts


def assert_async_wgmmas(counts: Counter):
    """ptxas waits for every wgmma on its own when the registers do not allow one in flight: a group per
    instruction (advisory C7512)."""
    assert counts["WARPGROUP"] < counts["HGMMA"] // 2, f"wgmmas serialized: {dict(counts)}"


def assert_uniform_descriptors(sass: str):
    """The step loops' wgmma descriptors come from uniform registers, not each through R2UR (two per wgmma when
    ptxas keeps the pipeline's stage in a vector register)."""
    steps = [(loop["R2UR"], loop["HGMMA"]) for loop in innermost_loops(sass) if loop["HGMMA"]]
    assert steps, "no loop of wgmmas found"
    assert all(r2ur < hgmma // 2 for r2ur, hgmma in steps), f"(R2UR, HGMMA) in the step loops: {steps}"


@pytest.mark.parametrize("mask", ["plain", "causal"])
@pytest.mark.parametrize("head_dim", [64, 96, 128, 192, 256])
def test_fwd_sass(head_dim, mask, tmp_path):
    sass = compile_sass("fwd", head_dim, mask, tmp_path)
    sass_of("fwd", head_dim, mask, tmp_path, sass=sass)
    assert_uniform_descriptors(sass)


@pytest.mark.parametrize("head_dim", [64, 128])
def test_fwd_split_tail_sass(head_dim, tmp_path):
    """The split tail's kernel, over long keys (one CTA a tile): a compile-time part count keeps the tile's
    key blocks, and with them the pipeline stages, in uniform registers."""
    sass = compile_sass("fwd", head_dim, "plain", tmp_path, config="dict(seqlen_k=16384, tail_splits=5)")
    sass_of("fwd", head_dim, "plain", tmp_path, sass=sass)
    assert_uniform_descriptors(sass)


@pytest.mark.parametrize("head_dim", [64, 128, 192])
def test_bwd_split_tail_sass(head_dim, tmp_path):
    """The backward's split tail: steps as lean as the default's, no spill."""
    sass = compile_sass("bwd", head_dim, "plain", tmp_path, config="dict(tail_splits=7)")
    sass_of("bwd", head_dim, "plain", tmp_path, sass=sass)
    assert_uniform_descriptors(sass)


@pytest.mark.parametrize("mask", ["plain", "causal"])
@pytest.mark.parametrize("head_dim", [64, 128, 192, 256])
def test_bwd_sass(head_dim, mask, tmp_path):
    sass = compile_sass("bwd", head_dim, mask, tmp_path)
    counts = sass_of("bwd", head_dim, mask, tmp_path, sass=sass)
    assert_async_wgmmas(counts)
    assert counts["UBLKRED"] == 1, f"dQ should leave in one bulk reduction; opcodes found: {dict(counts)}"
    assert not counts["REDG"] and not counts["ATOMG"], "the backward's consumers add dQ with atomics again"
    assert_uniform_descriptors(sass)


@pytest.mark.parametrize("head_dim,config", [(64, "dict(split_columns=True, tile_n=128)"),
                                             (64, "dict(split_columns=True, tile_m=128)"),
                                             (128, "dict(split_columns=True, tile_n=128)"),
                                             (64, "dict(tile_m=64)"), (192, "dict(split_columns=True)"),
                                             (128, "dict(tile_m=80, overlap_dq=True, prefetch_stats=True, "
                                                   "dv_under_fence=True)")])
def test_bwd_config_variants_sass(head_dim, config, tmp_path):
    assert_async_wgmmas(sass_of("bwd", head_dim, "causal", tmp_path, config))


# A warpgroup evaluates the table read at q_idx - kv_idx once per difference its tile spans (a few per thread),
# into shared memory: 191 differences in the forward (64 queries, 128 keys), 127 in the backward (64 and 64).
@pytest.mark.parametrize("mod", ["rel_bias", "t5_bias"])
@pytest.mark.parametrize("direction,loads,instructions", [("fwd", 2, 900), ("bwd", 1, 700)])
def test_position_bias_sass(direction, loads, instructions, mod, tmp_path):
    """A table read at q_idx - kv_idx (through T5's buckets too) is loaded for the warpgroup's differences, not
    per score; the step stays near the plain one's size (forward 492, 630 where masked; backward 444) and does
    not spill."""
    sass = compile_sass(direction, 128, "plain", tmp_path, mod=mod)
    sass_of(direction, 128, "plain", tmp_path, sass=sass)
    steps = [(sum(loop.values()), loop["LDG"]) for loop in innermost_loops(sass) if loop["HGMMA"]]
    assert steps and all(n <= instructions and ldg <= loads for n, ldg in steps), \
        f"(instructions, table loads) per step: {steps}; at most {instructions} and {loads} expected"
