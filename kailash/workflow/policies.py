"""Failure policies for one node, as data: retries, a timeout, a circuit breaker, a result cache.

``Workflow.set_policy(node_id, ...)`` validates the options and stores a frozen
:class:`NodePolicy` in ``workflow.policies``; saving a workflow writes
:meth:`NodePolicy.to_dict`. This module only *describes* policies: the runtime
(:mod:`kailash.runtime.policies`) builds the circuit breaker and cache state for a
policy and runs the attempt loop. Nothing here runs a node or imports a runtime.

A :class:`BreakerPolicy` or :class:`CachePolicy` compares by identity: each
``set_policy`` call makes a new one, and the runtime keeps one breaker (or cache)
per spec object, so state is shared by every run of the workflow holding it and by
nothing else. To share one circuit between nodes or workflows, pass the same
``kailash.runtime.policies.CircuitBreaker`` to each ``set_policy`` call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kailash._backoff import backoff_delay
from kailash.errors import CircuitOpenError, Problem, SerializationError, WorkflowValidationError

if TYPE_CHECKING:
    from kailash.workflow.graph import Workflow

__all__ = ["RetryPolicy", "TimeoutPolicy", "BreakerPolicy", "CachePolicy", "NodePolicy", "CircuitOpenError",
           "make_policy", "apply_policy_dict", "POLICY_KEYS"]

POLICY_KEYS = ("retries", "backoff", "max_backoff", "jitter", "timeout", "circuit_breaker", "cache_ttl")


@dataclass(frozen=True, kw_only=True, slots=True)
class RetryPolicy:
    """Retry a failed node with exponential backoff.

    Attempt ``n`` (1-based) that fails waits ``backoff * 2**(n-1)`` seconds, capped at
    ``max_backoff``; with ``jitter`` the wait is drawn uniformly from half of that to all
    of it, so clients that failed together do not retry together (see
    :func:`kailash._backoff.backoff_delay`). Configuration and security errors are not
    retried: they would fail again.
    """

    retries: int = 0
    backoff: float = 0.5
    max_backoff: float = 60.0
    jitter: bool = True

    def delay(self, attempt: int, rand: float | None = None) -> float:
        """Seconds to wait after failed attempt ``attempt`` (``rand`` in [0, 1) fixes the jitter)."""
        return backoff_delay(attempt, backoff=self.backoff, max_backoff=self.max_backoff, jitter=self.jitter,
                             rand=rand)


@dataclass(frozen=True, kw_only=True, slots=True)
class TimeoutPolicy:
    """Stop waiting for one attempt of the node after ``seconds``."""

    seconds: float


@dataclass(frozen=True, kw_only=True, slots=True, eq=False, weakref_slot=True)
class BreakerPolicy:
    """Fail fast after ``failure_threshold`` consecutive failed calls, for ``reset_timeout`` seconds.

    ``shared`` is a runtime ``CircuitBreaker`` the user passed to share one circuit
    between nodes or workflows (the runtime uses it as this policy's state).
    """

    failure_threshold: int = 5
    reset_timeout: float = 30.0
    shared: Any = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"failure_threshold": self.failure_threshold, "reset_timeout": self.reset_timeout}


@dataclass(frozen=True, kw_only=True, slots=True, eq=False, weakref_slot=True)
class CachePolicy:
    """Keep a node's outputs for ``ttl`` seconds, keyed by its inputs (at most ``max_entries``)."""

    ttl: float
    max_entries: int = 1024


@dataclass(frozen=True, kw_only=True, slots=True, eq=False, weakref_slot=True)
class NodePolicy:
    """Everything that wraps calls to one node. Build it with ``Workflow.set_policy``.

    The order is fixed: a cached result is returned first; an open circuit fails fast;
    otherwise the node is attempted up to ``retries + 1`` times with backoff, each
    attempt under the timeout.

    Example:
        >>> from kailash.workflow import Workflow
        >>> from kailash.nodes.code.python import PythonCodeNode
        >>> wf = Workflow("p")
        >>> _ = wf.add_node("fetch", PythonCodeNode(code="result = 1"))
        >>> wf.set_policy("fetch", retries=3, backoff=0.2, timeout=5).to_dict()
        {'retries': 3, 'backoff': 0.2, 'max_backoff': 60.0, 'jitter': True, 'timeout': 5.0}
    """

    node_id: str | None = None
    retry: RetryPolicy | None = None
    timeout: TimeoutPolicy | None = None
    circuit_breaker: BreakerPolicy | None = None
    cache: CachePolicy | None = None

    def to_dict(self) -> dict[str, Any]:
        """The policy as plain data (the keyword arguments of ``Workflow.set_policy``)."""
        d: dict[str, Any] = {}
        if self.retry is not None:
            r = self.retry
            d.update(retries=r.retries, backoff=r.backoff, max_backoff=r.max_backoff, jitter=r.jitter)
        if self.timeout is not None:
            d["timeout"] = self.timeout.seconds
        if self.circuit_breaker is not None:
            d["circuit_breaker"] = self.circuit_breaker.to_dict()
        if self.cache is not None:
            d["cache_ttl"] = self.cache.ttl
        return d


# -- building policies ---------------------------------------------------------------------------

def _problem(node_id: str, parameter: str, expected: str, got: str, message: str) -> Problem:
    return Problem(node_id=node_id, parameter=parameter, expected=expected, got=got, message=message)


def _positive(problems: list[Problem], node_id: str, name: str, value: Any, *, zero_ok: bool = False) -> None:
    where = f"set_policy('{node_id}')"
    parameter = name.replace("circuit_breaker ", "circuit_breaker.")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        problems.append(_problem(node_id, parameter, "a number of seconds", type(value).__name__,
                                 f"{where}: {name} must be a number of seconds, got {type(value).__name__}"))
    elif value < 0 or (value == 0 and not zero_ok):
        expected = ">= 0" if zero_ok else "a positive number of seconds"
        problems.append(_problem(node_id, parameter, expected, repr(value),
                                 f"{where}: {name} must be {expected}, got {value}"))


def make_policy(node_id: str, *, retries: int = 0, backoff: float = 0.5, max_backoff: float = 60.0,
                jitter: bool = True, timeout: float | None = None, circuit_breaker: Any = None,
                cache_ttl: float | None = None) -> NodePolicy | None:
    """Validate the options of ``Workflow.set_policy`` and build the policy (``None`` if it does nothing)."""
    where = f"set_policy('{node_id}')"
    problems: list[Problem] = []
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        problems.append(_problem(node_id, "retries", "an integer >= 0", repr(retries),
                                 f"{where}: retries must be an integer >= 0, got {retries!r}"))
    _positive(problems, node_id, "backoff", backoff, zero_ok=True)
    _positive(problems, node_id, "max_backoff", max_backoff)
    if not isinstance(jitter, bool):
        problems.append(_problem(node_id, "jitter", "True or False", repr(jitter),
                                 f"{where}: jitter must be True or False, got {jitter!r}"))
    if timeout is not None:
        _positive(problems, node_id, "timeout", timeout)
    if cache_ttl is not None:
        _positive(problems, node_id, "cache_ttl", cache_ttl)
    breaker = _breaker(problems, node_id, circuit_breaker)
    if problems:
        raise WorkflowValidationError(
            f"invalid policy for node '{node_id}':\n  - " + "\n  - ".join(p.message for p in problems),
            problems=problems, node_id=node_id, parameter=problems[0].parameter,
        )
    policy = NodePolicy(
        node_id=node_id,
        retry=RetryPolicy(retries=retries, backoff=float(backoff), max_backoff=float(max_backoff), jitter=jitter)
        if retries else None,
        timeout=TimeoutPolicy(seconds=float(timeout)) if timeout is not None else None,
        circuit_breaker=breaker,
        cache=CachePolicy(ttl=float(cache_ttl)) if cache_ttl is not None else None,
    )
    if policy.retry is None and policy.timeout is None and breaker is None and policy.cache is None:
        return None
    return policy


def _breaker(problems: list[Problem], node_id: str, spec: Any) -> BreakerPolicy | None:
    where = f"set_policy('{node_id}')"
    if spec is None or spec is False:
        return None
    if isinstance(spec, BreakerPolicy):
        return spec
    if _is_breaker(spec):  # a runtime CircuitBreaker shared between nodes: keep a reference to it
        return BreakerPolicy(failure_threshold=spec.failure_threshold, reset_timeout=spec.reset_timeout, shared=spec)
    if spec is True:
        return BreakerPolicy()
    if isinstance(spec, int) and not isinstance(spec, bool):
        spec = {"failure_threshold": spec}
    if not isinstance(spec, dict):
        problems.append(_problem(
            node_id, "circuit_breaker", "True, a failure count, a dict or a CircuitBreaker", type(spec).__name__,
            f"{where}: circuit_breaker must be True, a failure count, "
            f"{{'failure_threshold': n, 'reset_timeout': s}} or a CircuitBreaker, got {type(spec).__name__}"))
        return None
    unknown = set(spec) - {"failure_threshold", "reset_timeout"}
    if unknown:
        names = ", ".join(sorted(map(str, unknown)))
        problems.append(_problem(node_id, "circuit_breaker", "failure_threshold, reset_timeout", names,
                                 f"{where}: circuit_breaker has unknown option(s) {names} "
                                 "(known: failure_threshold, reset_timeout)"))
        return None
    threshold = spec.get("failure_threshold", 5)
    reset = spec.get("reset_timeout", 30.0)
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
        problems.append(_problem(
            node_id, "circuit_breaker.failure_threshold", "an integer >= 1", repr(threshold),
            f"{where}: circuit_breaker failure_threshold must be an integer >= 1, got {threshold!r}"))
    _positive(problems, node_id, "circuit_breaker reset_timeout", reset)
    return BreakerPolicy(failure_threshold=threshold, reset_timeout=float(reset)) if not problems else None


def _is_breaker(obj: Any) -> bool:
    return all(hasattr(obj, a) for a in ("failure_threshold", "reset_timeout", "before", "record"))


def apply_policy_dict(workflow: Workflow, node_id: str, spec: Any) -> NodePolicy | None:
    """Apply a saved policy (``NodePolicy.to_dict()`` output) to ``node_id`` of ``workflow``."""
    if not isinstance(spec, dict):
        raise SerializationError(
            f"policy for node '{node_id}' must be a mapping of {', '.join(POLICY_KEYS)}, got {type(spec).__name__}",
            node_id=node_id, parameter="policies", expected="mapping",
        )
    unknown = [k for k in spec if k not in POLICY_KEYS]
    if unknown:
        raise SerializationError(
            f"policy for node '{node_id}' has unknown option(s) {', '.join(map(repr, unknown))} "
            f"(known: {', '.join(POLICY_KEYS)})",
            node_id=node_id, parameter=str(unknown[0]), expected=" | ".join(POLICY_KEYS),
        )
    try:
        policy: NodePolicy | None = workflow.set_policy(node_id, **spec)
        return policy
    except WorkflowValidationError as exc:
        raise SerializationError(f"cannot load policies: {exc.message}", node_id=node_id,
                                 parameter=exc.parameter) from None
