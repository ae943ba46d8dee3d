"""Kernels that CI compiles for their architecture on a machine with no GPU.

Every kernel module under `cuteattn/sm*/` and `cuteattn/mods/` registers, with `compile_target`, a function
that builds the kernel for a few representative configurations with `cute.compile` and returns nothing. The compile-only
test (`tests/test_compile.py`) imports every such module and runs each target with `CUTE_DSL_ARCH` set to
the target's architecture.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Callable

KERNEL_PACKAGES = ("mods", "sm80", "sm90", "sm100")


@dataclass(frozen=True)
class CompileTarget:
    name: str  # "sm90.bwd_preprocess"
    arch: str  # value for CUTE_DSL_ARCH: "sm_80", "sm_90a", "sm_100a"
    build: Callable[[], None]


_targets: dict[str, CompileTarget] = {}


def compile_target(name: str, arch: str):
    """Decorator: register `fn()` as the compile check of kernel `name` for `arch`."""

    def register(fn: Callable[[], None]) -> Callable[[], None]:
        if name in _targets:
            raise ValueError(f"compile target {name!r} is registered twice")
        _targets[name] = CompileTarget(name, arch, fn)
        return fn

    return register


def load_all() -> dict[str, CompileTarget]:
    """Import every kernel module and return the registered targets by name."""
    for package_name in KERNEL_PACKAGES:
        package = importlib.import_module(f"cuteattn.{package_name}")
        for module in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{package.__name__}.{module.name}")
    return dict(_targets)
