"""Compile every registered kernel for its architecture, each in a fresh process, with no GPU."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cuteattn.registry import load_all

REPO_ROOT = Path(__file__).resolve().parent.parent
TARGETS = load_all()


def test_targets_registered():
    assert TARGETS, "no compile target is registered: the compile check would test nothing"


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_compile(name):
    target = TARGETS[name]
    build = f"from cuteattn.registry import load_all; load_all()[{name!r}].build()"
    result = subprocess.run(
        [sys.executable, "-c", build],
        cwd=REPO_ROOT,
        env={**os.environ, "CUTE_DSL_ARCH": target.arch},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"{name} failed to compile for {target.arch}:\n{result.stderr}"


def test_oversized_config_is_refused():
    """A config whose shared memory outgrows the GPU's fails at compile time with an error naming it, not at
    launch with an invalid-configuration error."""
    build = ("import torch\n"
             "from cuteattn import reference\n"
             "from cuteattn.sm90 import backward\n"
             "from cuteattn.sm90.bwd_config import BwdConfig\n"
             "opts = reference.Options(softmax_scale=1.0, window_left=None, window_right=None, softcap=0.0,\n"
             "                         learnable_sink=None, score_mod=None, mask_mod=None, block_mask=None)\n"
             "config = BwdConfig(split_columns=True, tile_m=128)\n"
             "backward._compile(backward.kernel_for(torch.bfloat16, 128, 128, 1, opts, config=config))\n")
    result = subprocess.run([sys.executable, "-c", build], cwd=REPO_ROOT, env={**os.environ, "CUTE_DSL_ARCH": "sm_90a"},
                            capture_output=True, text=True, timeout=600)
    assert result.returncode != 0
    assert "ValueError: FlashBwdSm90SplitD(head_dim 128) with BwdConfig(tile_m=128" in result.stderr, result.stderr
    assert "bytes of shared memory; this architecture has 232448" in result.stderr, result.stderr
