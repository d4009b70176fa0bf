"""The whole Kailash exception tree, in one place.

Every error the SDK raises derives from :class:`KailashError` and from the builtin
that matches its phase, so ``except ValueError`` keeps working for callers who do not
know Kailash::

    KailashError
    ├── WorkflowValidationError(ValueError)      the graph or its inputs are wrong
    ├── NodeConfigurationError(TypeError)        a node's parameter is missing or mistyped
    ├── NodeExecutionError(RuntimeError)         a node raised while running
    │   ├── NodeTimeoutError(TimeoutError)       a node ran past its time limit
    │   ├── CircuitOpenError                     a node's circuit breaker is open; not called
    │   └── RunStoppedError                      the run was stopped from outside before a node
    ├── ClusterConnectionError(ConnectionError)  a cluster scheduler could not be reached
    ├── SecurityError(PermissionError)           a security policy refused an action
    ├── SerializationError(ValueError)           a saved workflow cannot be read or written
    ├── TenantError(ValueError)                  a tenant cannot be created or found
    ├── ScheduleError(ValueError)                a schedule is invalid (cron, interval, timezone...)
    └── UnknownNodeTypeError(LookupError)        a node type name is not registered

Context travels as attributes (``node_id``, ``parameter``, ``expected``, ``got``,
``run_id``) as well as in the message. A validation error lists every problem it found
as :class:`Problem` values, so callers (the gateway's 422 bodies, the Studio) read the
node and parameter from fields, never from the wording. This module imports nothing
from Kailash.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Problem",
    "KailashError",
    "WorkflowValidationError",
    "NodeConfigurationError",
    "NodeExecutionError",
    "NodeTimeoutError",
    "CircuitOpenError",
    "RunStoppedError",
    "ClusterConnectionError",
    "SecurityError",
    "SerializationError",
    "UnknownNodeTypeError",
    "TenantError",
    "ScheduleError",
]


class KailashError(Exception):
    """Root of every Kailash error.

    Attributes:
        node_id: the node the error concerns, if any.
        parameter: the parameter the error concerns, if any.
        expected: what was expected (a short phrase), if known.
        got: what was received, if known (never a secret value).
        run_id: the run during which the error happened, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        node_id: str | None = None,
        parameter: str | None = None,
        expected: Any = None,
        got: Any = None,
        run_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.node_id = node_id
        self.parameter = parameter
        self.expected = expected
        self.got = got
        self.run_id = run_id

    def __str__(self) -> str:
        if self.run_id and "run " not in self.message:
            return f"{self.message} (run {self.run_id})"
        return self.message

    def __reduce__(self):  # keep attributes across process boundaries (Dask, sandbox)
        return (_rebuild, (type(self), self.message, self.__dict__))


def _rebuild(cls: type[KailashError], message: str, state: dict[str, Any]) -> KailashError:
    try:
        err = cls(message)
    except TypeError:  # a subclass with required constructor arguments
        err = cls.__new__(cls)
        Exception.__init__(err, message)
    err.__dict__.update(state)
    return err


@dataclass(frozen=True, kw_only=True, slots=True)
class Problem:
    """One thing wrong with a workflow, a node's configuration or the inputs of a run.

    Attributes:
        node_id: the node the problem concerns, if any.
        parameter: the parameter (or input) the problem concerns, if any.
        expected: what was expected, as a short phrase (``"int"``), if known.
        got: what was received, as a short phrase (a type name, never a secret value).
        connection: ``(source, target)`` of the connection the problem concerns, if any.
        message: the whole sentence, as it appears in the error's text.

    Example:
        >>> Problem(node_id="a", parameter="n", expected="int", got="bool",
        ...         message="node 'a': parameter 'n' expects int, got bool").to_dict()["parameter"]
        'n'
    """

    node_id: str | None = None
    parameter: str | None = None
    expected: str | None = None
    got: str | None = None
    connection: tuple[str, str] | None = None
    message: str

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, Any]:
        """``{"message", "node_id", "parameter", "expected", "got", "connection"}`` (the gateway's shape)."""
        return {"message": self.message, "node_id": self.node_id, "parameter": self.parameter,
                "expected": self.expected, "got": self.got,
                "connection": list(self.connection) if self.connection else None}


class WorkflowValidationError(KailashError, ValueError):
    """The workflow graph, its configuration or its inputs are invalid.

    ``problems`` is a tuple of :class:`Problem`: every problem found (validation gathers
    them all and raises once). Without ``problems=``, the error itself is the one problem.
    A plain string in ``problems`` becomes a problem with only its message.
    """

    problems: tuple[Problem, ...]

    def __init__(self, message: str, *, problems: Iterable[Problem | str] | None = None, **context: Any) -> None:
        super().__init__(message, **context)
        found = tuple(p if isinstance(p, Problem) else Problem(message=str(p)) for p in problems or ())
        self.problems = found or (Problem(
            node_id=self.node_id, parameter=self.parameter, message=message,
            expected=None if self.expected is None else str(self.expected),
            got=None if self.got is None else str(self.got),
        ),)

    @classmethod
    def listing(cls, what: str, problems: Iterable[Problem]) -> WorkflowValidationError:
        """One error for every problem: ``"{what} (N problems):"`` and a line each.

        Its ``node_id``, ``parameter``, ``expected`` and ``got`` are the first problem's.

        Example:
            >>> err = WorkflowValidationError.listing("workflow 'w' is invalid", [Problem(node_id="a", message="x")])
            >>> str(err), err.node_id
            ("workflow 'w' is invalid (1 problem):\\n  - x", 'a')
        """
        found = tuple(problems)
        first = found[0]
        return cls(
            f"{what} ({len(found)} problem{'s' if len(found) > 1 else ''}):\n  - "
            + "\n  - ".join(p.message for p in found),
            problems=found, node_id=first.node_id, parameter=first.parameter, expected=first.expected, got=first.got,
        )


class NodeConfigurationError(KailashError, TypeError):
    """A node parameter is unknown, missing or of the wrong type."""


class NodeExecutionError(KailashError, RuntimeError):
    """A node raised while running. The original exception is chained as ``__cause__``.

    ``results`` holds the outputs of the nodes that finished before the failure.
    """

    results: dict[str, Any]

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message, **context)
        self.results = {}


class NodeTimeoutError(NodeExecutionError, TimeoutError):
    """A node ran longer than its time limit and was stopped."""


class CircuitOpenError(NodeExecutionError):
    """The node's circuit breaker is open: the node was not called."""


class RunStoppedError(NodeExecutionError):
    """The run was stopped from outside before ``node_id`` started (``kailash.runtime.scheduler.stop_run``).

    ``recorded`` is False when the run ends without an outcome in its record (its owner
    lost it, e.g. a gateway whose queue lease passed to another gateway).
    """

    def __init__(self, message: str, *, recorded: bool = True, **context: Any) -> None:
        super().__init__(message, **context)
        self.recorded = recorded


class ClusterConnectionError(KailashError, ConnectionError):
    """A cluster scheduler (Dask) could not be reached."""


class SecurityError(KailashError, PermissionError):
    """A security policy refused an action (file access, sandboxed code, credentials)."""


class SerializationError(KailashError, ValueError):
    """A workflow file cannot be read or written (bad format, hostile content, version)."""


class TenantError(KailashError, ValueError):
    """A tenant cannot be created or found (bad id, taken id or schema, unknown tenant)."""


class ScheduleError(KailashError, ValueError):
    """A schedule is invalid (bad cron expression, interval, timezone or catch-up policy); ``parameter`` names the field."""


class UnknownNodeTypeError(KailashError, LookupError):
    """A node type name is not in the registry. ``suggestions`` lists close matches."""

    def __init__(self, message: str, *, suggestions: list[str] | None = None, **context: Any) -> None:
        super().__init__(message, **context)
        self.suggestions = list(suggestions or [])
