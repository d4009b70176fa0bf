"""What a node receives from the runtime that calls it: the :class:`ExecutionContext` protocol.

A node that must run something larger than itself (``WorkflowNode`` running an inner
workflow) declares ``needs_context = True``; every runtime then calls
``node.run_in_context(context, **inputs)`` with an object satisfying
:class:`ExecutionContext`. The node uses the context to load and run the inner
workflow, so it imports neither ``kailash.runtime`` nor ``kailash.workflow``.

The runtime's implementation is :class:`kailash.runtime.engine.RunContext`. This
module only describes the interface; it imports nothing from the layers above.

Example:
    A node that runs a sub-workflow given as a dict, using only the context::

        class RunInner(Node):
            needs_context = True

            def run_in_context(self, context: ExecutionContext, /, **inputs):
                inner = context.load_workflow({"name": "inner", "nodes": [...]})
                results = context.run_workflow(inner, {"first": inputs})
                return {"result": results["last"]}
"""

from __future__ import annotations

import contextvars
import math
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

__all__ = ["ExecutionContext", "RUN_DEADLINE", "RunStop", "run_time_left", "bounded_by_run"]

class RunStop:
    """What stops the run executing here before its next node (``time.perf_counter`` instants).

    Made and changed by the runtime (``kailash.runtime.scheduler.run_deadline``,
    ``stop_run``, ``lease_run``); the scheduler compares each node's start with :attr:`at`.

    Attributes:
        at: no node starts after this: the earlier of :attr:`limit` and :attr:`lease`, and
            ``-inf`` once the run is stopped.
        seconds: the time limit, in seconds (``inf``: none).
        why: why the run was stopped (``None`` until it is).
        record: whether a stopped run records its outcome.
        limit: when the time limit passes.
        lease: when the run's lease ends unless renewed (``inf``: no lease).
        renew: called in the run's thread when a node is due after :attr:`lease`.
    """

    __slots__ = ("at", "seconds", "why", "record", "limit", "lease", "renew")

    def __init__(self, limit: float, seconds: float) -> None:
        self.at = self.limit = limit
        self.seconds = seconds
        self.why: str | None = None
        self.record = False
        self.lease = math.inf
        self.renew: Callable[[], None] | None = None


#: The :class:`RunStop` of the run executing here, if it has a time limit or can be stopped
#: from outside; set by the runtime (``kailash.runtime.scheduler.run_deadline``).
RUN_DEADLINE: contextvars.ContextVar[RunStop | None] = contextvars.ContextVar(
    "kailash_run_deadline", default=None)


def run_time_left() -> float | None:
    """Seconds left before the run executing here must stop (``None``: no limit)."""
    deadline = RUN_DEADLINE.get()
    # the time limit, not the lease (a renewed lease does not end the run); -inf once stopped
    at: float = math.inf if deadline is None else deadline.at if deadline.why is not None else deadline.limit
    return None if at == math.inf else max(at - time.perf_counter(), 0.001)


def bounded_by_run(timeout: Any) -> Any:
    """``timeout`` (seconds, ``None`` or an ``httpx.Timeout``) no longer than the run has left.

    Nodes that block outside Python (network calls) use it, so a call cannot outlive the
    run's time limit in an abandoned thread.

    Example:
        >>> bounded_by_run(30.0)  # no run limit here
        30.0
    """
    left = run_time_left()
    if left is None:
        return timeout
    if timeout is None or isinstance(timeout, (int, float)):
        return left if timeout is None else min(float(timeout), left)
    fields = {k: getattr(timeout, k, None) for k in ("connect", "read", "write", "pool")}
    return type(timeout)(**{k: left if v is None else min(v, left) for k, v in fields.items()})


@runtime_checkable
class ExecutionContext(Protocol):
    """The run a node is being called in, and what it may ask that run to do.

    Attributes:
        run_id: the id of the run (sub-workflows run inside it, under the same id).
        node_id: the id of the node being called (``None`` outside a workflow).
        depth: how many sub-workflows deep this call is (0 for the outer workflow).
    """

    run_id: str
    node_id: str | None
    depth: int

    def load_workflow(self, source: Any) -> Any:
        """A workflow from ``source``: a workflow object (returned as is), its dict form, or a
        ``.yaml``/``.json`` path.

        Raises:
            NodeConfigurationError: the path does not exist.
            SerializationError: the dict or file does not describe a valid workflow.
        """
        ...

    def run_workflow(self, workflow: Any, parameters: dict[str, Any] | None = None) -> Mapping[str, dict[str, Any]]:
        """Run ``workflow`` inside this run, with the same runtime settings, and return
        ``{node_id: outputs}``. The inner run is not recorded separately.

        Raises:
            WorkflowValidationError: the inner workflow or ``parameters`` are invalid.
            KailashError: an inner node failed (``node_id`` names the inner node).
            NodeExecutionError: sub-workflows are nested more than 32 levels deep.
        """
        ...
