"""The typed boundaries of the runtime: ids, statuses, and the :class:`Runtime` protocol.

Every runtime (``LocalRuntime``, ``ParallelRuntime``, ``DaskRuntime``, ``TestRuntime``)
is a thin door onto :mod:`kailash.runtime.scheduler`; this module names what they
share so that callers (the gateway, the CLI) can be typed against it. Imports nothing
heavy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, NewType, Protocol, runtime_checkable

if TYPE_CHECKING:
    from kailash.runtime.store import RunRecord

__all__ = ["NodeId", "RunId", "NodeStatus", "RunStatus", "RecordOutputs", "Runtime"]

NodeId = NewType("NodeId", str)
"""The id of a node in a workflow."""

RunId = NewType("RunId", str)
"""The id of one run (32 hex digits)."""

NodeStatus = Literal["completed", "failed", "skipped"]
"""What happened to one node in a run."""

RunStatus = Literal["running", "completed", "failed", "interrupted"]
"""Where a run is."""

RecordOutputs = Literal["failed", "always", "never"]
"""When a run record keeps the node outputs."""


@runtime_checkable
class Runtime(Protocol):
    """What every runtime offers: a name, a run store, and the run history.

    Running differs in shape (``LocalRuntime.execute`` returns ``(results, run_id)``,
    ``ParallelRuntime.execute`` is a coroutine, ``TestRuntime.execute`` returns the
    results alone), so it is not part of the protocol; every runtime runs on the same
    scheduling core.
    """

    name: str
    store: Any

    def get_run(self, run_id: str) -> RunRecord | None: ...

    def list_runs(self, **filters: Any) -> list[RunRecord]: ...
