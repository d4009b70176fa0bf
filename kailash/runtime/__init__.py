"""Runtimes: run a workflow locally, concurrently, on a Dask cluster, or in tests.

``LocalRuntime`` is imported eagerly (it is light); the others load on first use.
"""

from __future__ import annotations

from typing import Any

from kailash.runtime.local import LocalRuntime

__all__ = ["LocalRuntime", "ParallelRuntime", "AsyncLocalRuntime", "DaskRuntime", "TestRuntime"]

_LAZY = {
    "ParallelRuntime": "kailash.runtime.parallel",
    "AsyncLocalRuntime": "kailash.runtime.parallel",
    "DaskRuntime": "kailash.runtime.distributed",
    "TestRuntime": "kailash.runtime.testing",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'kailash.runtime' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
