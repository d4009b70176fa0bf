"""Runtimes: run a workflow locally, concurrently, on a Dask cluster, or in tests.

``LocalRuntime`` is imported eagerly (it is light); the others load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kailash._lazy import lazy_exports
from kailash.nodes.standalone import provide_standalone_context
from kailash.runtime.local import LocalRuntime

__all__ = ["LocalRuntime", "ParallelRuntime", "AsyncLocalRuntime", "DaskRuntime", "TestRuntime"]

_LAZY = {
    "ParallelRuntime": "kailash.runtime.parallel",
    "AsyncLocalRuntime": "kailash.runtime.parallel",
    "DaskRuntime": "kailash.runtime.distributed",
    "TestRuntime": "kailash.runtime.testing",
}


if TYPE_CHECKING:  # what type checkers see; at run time each name is imported on first use
    from kailash.runtime.distributed import DaskRuntime as DaskRuntime
    from kailash.runtime.parallel import AsyncLocalRuntime as AsyncLocalRuntime
    from kailash.runtime.parallel import ParallelRuntime as ParallelRuntime
    from kailash.runtime.testing import TestRuntime as TestRuntime

__getattr__ = lazy_exports("kailash.runtime", _LAZY, globals())


def _standalone_context() -> Any:
    from kailash.runtime.engine import RunContext, new_run_id

    return RunContext(new_run_id(), None)


# A context-needing node run on its own (WorkflowNode(...).execute()) gets a fresh,
# unrecorded run from here: registering points the dependency down (nodes never import a runtime).
provide_standalone_context(_standalone_context)

