"""Failure policies for one node: retries, timeouts, a circuit breaker and a result cache.

``Workflow.set_policy(node_id, ...)`` builds a :class:`NodePolicy` and stores it in
``workflow.policies``; every runtime calls a node that has one through
:meth:`NodePolicy.call` (sync) or :meth:`NodePolicy.acall` (async). The order is
fixed: a cached result is returned first; an open circuit fails fast; otherwise the
node is attempted up to ``retries + 1`` times with exponential backoff, each attempt
under the timeout. The control flow is written once, as a generator of steps
(:meth:`NodePolicy._steps`), that a sync and an async driver walk.

Timeouts: an async node is cancelled. A sync node runs in its own daemon thread; at
the deadline the run stops waiting, raises :class:`~kailash.errors.NodeTimeoutError`,
and an exception is injected into the thread so Python code in it stops at its next
bytecode. A thread blocked inside C (a socket read, ``time.sleep``) finishes that call
first, and its result is discarded (see :mod:`kailash.workflow._attempts`).

The breaker and the cache are mutable state shared by every run of the workflow
holding the policy (one process). This module describes and applies policies; it
never imports a runtime.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kailash.errors import (
    CircuitOpenError,
    KailashError,
    NodeConfigurationError,
    SecurityError,
    SerializationError,
    WorkflowValidationError,
)
from kailash.workflow._attempts import attempt_async, attempt_sync, fingerprint

if TYPE_CHECKING:
    from kailash.nodes.base import Node
    from kailash.workflow.graph import Workflow

__all__ = ["RetryPolicy", "TimeoutPolicy", "CircuitBreaker", "ResultCache", "NodePolicy", "CircuitOpenError",
           "make_policy", "apply_policy_dict", "fingerprint", "POLICY_KEYS"]

POLICY_KEYS = ("retries", "backoff", "max_backoff", "jitter", "timeout", "circuit_breaker", "cache_ttl")
_NOT_RETRIED = (NodeConfigurationError, SecurityError, WorkflowValidationError)


@dataclass(frozen=True, kw_only=True, slots=True)
class RetryPolicy:
    """Retry a failed node with exponential backoff.

    Attempt ``n`` (1-based) that fails waits ``backoff * 2**(n-1)`` seconds, capped at
    ``max_backoff``; with ``jitter`` the wait is drawn uniformly from half of that to all
    of it, so clients that failed together do not retry together. Configuration and
    security errors are not retried: they would fail again.
    """

    retries: int = 0
    backoff: float = 0.5
    max_backoff: float = 60.0
    jitter: bool = True

    def delay(self, attempt: int, rand: float | None = None) -> float:
        """Seconds to wait after failed attempt ``attempt`` (``rand`` in [0, 1) fixes the jitter)."""
        wait = min(self.backoff * (2 ** (attempt - 1)), self.max_backoff)
        if self.jitter:
            r = random.random() if rand is None else rand
            wait = wait * (0.5 + 0.5 * r)
        return wait


@dataclass(frozen=True, kw_only=True, slots=True)
class TimeoutPolicy:
    """Stop waiting for one attempt of the node after ``seconds``."""

    seconds: float


class CircuitBreaker:
    """Fail fast after ``failure_threshold`` consecutive failed calls, for ``reset_timeout`` seconds.

    States: *closed* (calls pass), *open* (calls fail at once with
    :class:`CircuitOpenError`), *half-open* (after ``reset_timeout`` one trial call
    passes; success closes the circuit, failure opens it again). A call that exhausted
    its retries counts as one failure. Pass the same instance to several nodes or
    workflows to share one circuit.
    """

    def __init__(self, failure_threshold: int = 5, reset_timeout: float = 30.0) -> None:
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self._lock = threading.Lock()
        self.failures = 0
        self.opened_at: float | None = None
        self.last_error: str | None = None
        self._trial = False

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half-open"``."""
        if self.opened_at is None:
            return "closed"
        return "open" if time.monotonic() - self.opened_at < self.reset_timeout else "half-open"

    def before(self, node_id: str | None) -> None:
        """Raise :class:`CircuitOpenError` if the circuit does not let a call through now."""
        with self._lock:
            if self.opened_at is None:
                return
            left = self.reset_timeout - (time.monotonic() - self.opened_at)
            if left <= 0 and not self._trial:
                self._trial = True  # half-open: exactly one trial call
                return
        left = max(left, 0.0)
        raise CircuitOpenError(
            f"node '{node_id}': circuit breaker is open after {self.failures} consecutive failures "
            f"(last: {self.last_error}); not calling it for another {left:.1f} s",
            node_id=node_id, parameter="circuit_breaker", expected=f"fewer than {self.failure_threshold} failures",
        )

    def record(self, ok: bool, error: str | None = None) -> None:
        """Count the outcome of a call that was let through."""
        with self._lock:
            self._trial = False
            if ok:
                self.failures, self.opened_at, self.last_error = 0, None, None
                return
            self.failures += 1
            self.last_error = error
            if self.failures >= self.failure_threshold:
                self.opened_at = time.monotonic()

    def reset(self) -> None:
        """Close the circuit and forget past failures."""
        self.record(True)

    def to_dict(self) -> dict[str, Any]:
        return {"failure_threshold": self.failure_threshold, "reset_timeout": self.reset_timeout}

    def __getstate__(self) -> dict[str, Any]:  # shipped to Dask workers as a snapshot
        state = dict(self.__dict__)
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"CircuitBreaker(failure_threshold={self.failure_threshold}, reset_timeout={self.reset_timeout}, " \
               f"state={self.state!r})"


class ResultCache:
    """Outputs of a node keyed by a fingerprint of its inputs, kept ``ttl`` seconds.

    Inputs that cannot be fingerprinted (objects that do not pickle) are not cached.
    Secrets take part in the key through a hash of their value, so runs with different
    credentials never share an entry. At most ``max_entries`` are kept (oldest dropped).
    """

    def __init__(self, ttl: float, max_entries: int = 1024) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0] > time.time():
                self.hits += 1
                return dict(entry[1])
            if entry is not None:
                del self._entries[key]
            self.misses += 1
            return None

    def put(self, key: str, outputs: dict[str, Any]) -> None:
        with self._lock:
            self._entries[key] = (time.time() + self.ttl, dict(outputs))
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def __getstate__(self) -> dict[str, Any]:
        now = time.time()
        state = dict(self.__dict__)
        state.pop("_lock", None)
        state["_entries"] = OrderedDict((k, v) for k, v in self._entries.items() if v[0] > now)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


@dataclass(frozen=True, kw_only=True, slots=True)
class NodePolicy:
    """Everything that wraps calls to one node. Build it with ``Workflow.set_policy``.

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
    circuit_breaker: CircuitBreaker | None = None
    cache: ResultCache | None = None

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

    # -- the control flow, once ---------------------------------------------------------------
    def _steps(self, node: Node, inputs: dict[str, Any],
               events: list[tuple[Any, ...]] | None) -> Generator[tuple[str, float | None], Any, dict[str, Any]]:
        """Yields ``("run", timeout)`` (send back the outputs or throw the error) and ``("sleep", s)``."""
        key = None
        cache = self.cache
        if cache is not None:
            key = fingerprint(inputs)
            if key is not None:
                hit = cache.get(key)
                if hit is not None:
                    return hit
        breaker = self.circuit_breaker
        if breaker is not None:
            breaker.before(node.name)
        retry = self.retry
        retries = retry.retries if retry is not None else 0
        limit = self.timeout.seconds if self.timeout is not None else None
        attempt = 0
        while True:
            attempt += 1
            try:
                out = yield ("run", limit)
            except Exception as exc:
                if attempt <= retries and not isinstance(exc, _NOT_RETRIED):
                    yield ("sleep", retry.delay(attempt))  # type: ignore[union-attr]
                    continue
                if breaker is not None:
                    breaker.record(False, str(exc))
                    if events is not None:
                        events.append(("breaker", False, str(exc)))
                if attempt > 1 and isinstance(exc, KailashError):
                    exc.message = f"{exc.message} (failed {attempt} attempts)"
                    exc.args = (exc.message,)
                    exc.attempts = attempt  # type: ignore[attr-defined]
                raise
            if breaker is not None:
                breaker.record(True)
                if events is not None:
                    events.append(("breaker", True, None))
            if key is not None:
                cache.put(key, out)  # type: ignore[union-attr]
                if events is not None:
                    events.append(("cache", key, out))
            return out

    def call(self, node: Node, inputs: dict[str, Any], ctx: Any, events: list[tuple[Any, ...]] | None = None
             ) -> dict[str, Any]:
        """Call ``node`` (sync) under this policy; ``events`` collects state changes for replay."""
        gen = self._steps(node, inputs, events)
        send: Any = None
        error: BaseException | None = None
        while True:
            try:
                op, arg = gen.throw(error) if error is not None else gen.send(send)
            except StopIteration as stop:
                return stop.value
            send, error = None, None
            if op == "sleep":
                time.sleep(arg)  # type: ignore[arg-type]
                continue
            try:
                send = attempt_sync(node, inputs, ctx, arg)
            except Exception as exc:
                error = exc

    async def acall(self, node: Node, inputs: dict[str, Any], ctx: Any, executor: Any = None,
                    events: list[tuple[Any, ...]] | None = None) -> dict[str, Any]:
        """Await ``node`` under this policy: async nodes on the loop, sync ones in ``executor``."""
        gen = self._steps(node, inputs, events)
        send: Any = None
        error: BaseException | None = None
        while True:
            try:
                op, arg = gen.throw(error) if error is not None else gen.send(send)
            except StopIteration as stop:
                return stop.value
            send, error = None, None
            if op == "sleep":
                await asyncio.sleep(arg)  # type: ignore[arg-type]
                continue
            try:
                send = await attempt_async(node, inputs, ctx, arg, executor)
            except Exception as exc:
                error = exc

    def replay(self, events: list[tuple[Any, ...]]) -> None:
        """Apply state changes recorded by a copy of this policy (in a Dask worker) to this one."""
        for ev in events:
            if ev[0] == "breaker" and self.circuit_breaker is not None:
                self.circuit_breaker.record(ev[1], ev[2])
            elif ev[0] == "cache" and self.cache is not None:
                self.cache.put(ev[1], ev[2])


# -- building policies ---------------------------------------------------------------------------

def _positive(problems: list[str], where: str, name: str, value: Any, *, zero_ok: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        problems.append(f"{where}: {name} must be a number of seconds, got {type(value).__name__}")
    elif value < 0 or (value == 0 and not zero_ok):
        problems.append(f"{where}: {name} must be {'>= 0' if zero_ok else 'a positive number of seconds'}, got {value}")


def make_policy(node_id: str, *, retries: int = 0, backoff: float = 0.5, max_backoff: float = 60.0,
                jitter: bool = True, timeout: float | None = None, circuit_breaker: Any = None,
                cache_ttl: float | None = None) -> NodePolicy | None:
    """Validate the options of ``Workflow.set_policy`` and build the policy (``None`` if it does nothing)."""
    where = f"set_policy('{node_id}')"
    problems: list[str] = []
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        problems.append(f"{where}: retries must be an integer >= 0, got {retries!r}")
    _positive(problems, where, "backoff", backoff, zero_ok=True)
    _positive(problems, where, "max_backoff", max_backoff)
    if not isinstance(jitter, bool):
        problems.append(f"{where}: jitter must be True or False, got {jitter!r}")
    if timeout is not None:
        _positive(problems, where, "timeout", timeout)
    if cache_ttl is not None:
        _positive(problems, where, "cache_ttl", cache_ttl)
    breaker = _breaker(problems, where, circuit_breaker)
    if problems:
        raise WorkflowValidationError(
            f"invalid policy for node '{node_id}':\n  - " + "\n  - ".join(problems),
            problems=problems, node_id=node_id, parameter=problems[0].split(": ", 1)[1].split(" ", 1)[0],
        )
    policy = NodePolicy(
        node_id=node_id,
        retry=RetryPolicy(retries=retries, backoff=float(backoff), max_backoff=float(max_backoff), jitter=jitter)
        if retries else None,
        timeout=TimeoutPolicy(seconds=float(timeout)) if timeout is not None else None,
        circuit_breaker=breaker,
        cache=ResultCache(float(cache_ttl)) if cache_ttl is not None else None,
    )
    if policy.retry is None and policy.timeout is None and breaker is None and policy.cache is None:
        return None
    return policy


def _breaker(problems: list[str], where: str, spec: Any) -> CircuitBreaker | None:
    if spec is None or spec is False:
        return None
    if isinstance(spec, CircuitBreaker):
        return spec
    if spec is True:
        return CircuitBreaker()
    if isinstance(spec, int) and not isinstance(spec, bool):
        spec = {"failure_threshold": spec}
    if not isinstance(spec, dict):
        problems.append(f"{where}: circuit_breaker must be True, a failure count, "
                        f"{{'failure_threshold': n, 'reset_timeout': s}} or a CircuitBreaker, got {type(spec).__name__}")
        return None
    unknown = set(spec) - {"failure_threshold", "reset_timeout"}
    if unknown:
        problems.append(f"{where}: circuit_breaker has unknown option(s) {', '.join(sorted(map(str, unknown)))} "
                        "(known: failure_threshold, reset_timeout)")
        return None
    threshold = spec.get("failure_threshold", 5)
    reset = spec.get("reset_timeout", 30.0)
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
        problems.append(f"{where}: circuit_breaker failure_threshold must be an integer >= 1, got {threshold!r}")
    _positive(problems, where, "circuit_breaker reset_timeout", reset)
    return CircuitBreaker(threshold, float(reset)) if not problems else None


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
        return workflow.set_policy(node_id, **spec)
    except WorkflowValidationError as exc:
        raise SerializationError(f"cannot load policies: {exc.message}", node_id=node_id,
                                 parameter=exc.parameter) from None
