"""One compiled kernel per code-generation configuration, per process."""

from __future__ import annotations

import threading
from typing import Any, Callable, Hashable

_cache: dict[Hashable, Any] = {}
_lock = threading.Lock()


def get_or_compile(key: Hashable, compile_fn: Callable[[], Any]) -> Any:
    """The compiled kernel for `key`, compiling it with `compile_fn` on first use.

    `key` must name every parameter that changes the generated code: the kernel class, the target
    architecture, dtypes, head dims, tile shape, feature flags and the identity of any user mods.
    Shapes that the kernel takes at run time (batch, seqlen, strides) stay out of it.
    """
    compiled = _cache.get(key)
    if compiled is None:
        with _lock:
            compiled = _cache.get(key)
            if compiled is None:
                compiled = compile_fn()
                _cache[key] = compiled
    return compiled


def cache_size() -> int:
    return len(_cache)


def clear() -> None:
    with _lock:
        _cache.clear()
