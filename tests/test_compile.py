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
