"""Runtimes: run a workflow locally, concurrently, on a Dask cluster, or in tests.

``LocalRuntime`` is imported eagerly (it is light); the others load on first use.
"""

from __future__ import annotations

from kailash._lazy import lazy_exports
from kailash.runtime.local import LocalRuntime

__all__ = ["LocalRuntime", "ParallelRuntime", "AsyncLocalRuntime", "DaskRuntime", "TestRuntime"]

_LAZY = {
    "ParallelRuntime": "kailash.runtime.parallel",
    "AsyncLocalRuntime": "kailash.runtime.parallel",
    "DaskRuntime": "kailash.runtime.distributed",
    "TestRuntime": "kailash.runtime.testing",
}


__getattr__ = lazy_exports("kailash.runtime", _LAZY, globals())

