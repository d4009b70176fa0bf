"""Applying failure policies: circuit breakers, result caches and the attempt loop.

A workflow describes a node's policy as frozen data
(:class:`kailash.workflow.policies.NodePolicy`); this module builds the mutable state
that goes with it and runs calls under it. :func:`policy_state` returns the
:class:`PolicyState` of a policy spec — one per spec object, kept in a side table
(never on the spec or the plan), so a breaker's state is shared by every run of the
workflow holding the policy, in this process. A ``CircuitBreaker`` passed to
``set_policy`` is used as the state of every policy it was given to.

The control flow is written once, as a generator of steps (:meth:`PolicyState._steps`)
that a sync and an async driver walk. Timeouts: see :mod:`kailash.runtime._attempts`
(async nodes are cancelled; a sync node is abandoned, never interrupted).
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from kailash.errors import (
    CircuitOpenError,
    KailashError,
    NodeConfigurationError,
    SecurityError,
    WorkflowValidationError,
)
from kailash.runtime._attempts import attempt_async, attempt_sync, fingerprint
from kailash.workflow.policies import NodePolicy

if TYPE_CHECKING:
    from kailash.nodes.base import Node

__all__ = ["CircuitBreaker", "ResultCache", "PolicyState", "policy_state", "fingerprint", "Events"]

_NOT_RETRIED = (NodeConfigurationError, SecurityError, WorkflowValidationError)
Events = list[tuple[Any, ...]]
"""State changes made while calling a node (``("breaker", ok, error)``, ``("cache", key, outputs)``),
collected where the node ran and replayed into the caller's state (Dask workers)."""


class CircuitBreaker:
    """Fail fast after ``failure_threshold`` consecutive failed calls, for ``reset_timeout`` seconds.

    States: *closed* (calls pass), *open* (calls fail at once with
    :class:`~kailash.errors.CircuitOpenError`), *half-open* (after ``reset_timeout`` one
    trial call passes; success closes the circuit, failure opens it again). A call that
    exhausted its retries counts as one failure. Pass the same instance to several
    ``set_policy`` calls to share one circuit between nodes or workflows.
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

    def release(self) -> None:
        """Give back a call that was let through but ended with no outcome (cancelled).

        A cancelled half-open trial proves nothing either way: the circuit stays open
        (its timeout already passed), so the next call becomes the trial.
        """
        with self._lock:
            self._trial = False

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


class PolicyState:
    """A policy spec with its live breaker and cache: calls a node under the policy."""

    __slots__ = ("spec", "breaker", "cache")

    def __init__(self, spec: NodePolicy, breaker: CircuitBreaker | None = None, cache: ResultCache | None = None):
        self.spec = spec
        self.breaker = breaker
        self.cache = cache

    def _steps(self, node: Node, inputs: dict[str, Any],
               events: Events | None) -> Generator[tuple[str, float | None], Any, dict[str, Any]]:
        """Yields ``("run", timeout)`` (send back the outputs or throw the error) and ``("sleep", s)``."""
        key = None
        cache = self.cache
        if cache is not None:
            key = fingerprint(inputs)
            if key is not None:
                hit = cache.get(key)
                if hit is not None:
                    return hit
        breaker = self.breaker
        if breaker is None:
            return (yield from self._attempts(node, None, events, cache, key))
        breaker.before(node.name)
        outcome: list[bool] = []  # filled when the breaker recorded this call's outcome
        try:
            return (yield from self._attempts(node, breaker, events, cache, key, outcome))
        finally:
            if not outcome:  # cancelled or abandoned (GeneratorExit): free the half-open trial slot
                breaker.release()

    def _attempts(self, node: Node, breaker: CircuitBreaker | None, events: Events | None,
                  cache: ResultCache | None, key: str | None,
                  outcome: list[bool] | None = None) -> Generator[tuple[str, float | None], Any, dict[str, Any]]:
        retry = self.spec.retry
        retries = retry.retries if retry is not None else 0
        limit = self.spec.timeout.seconds if self.spec.timeout is not None else None
        attempt = 0
        while True:
            attempt += 1
            try:
                out = yield ("run", limit)
            except Exception as exc:
                if retry is not None and attempt <= retries and not isinstance(exc, _NOT_RETRIED):
                    yield ("sleep", retry.delay(attempt))
                    continue
                if breaker is not None:
                    breaker.record(False, str(exc))
                    if outcome is not None:
                        outcome.append(False)
                    if events is not None:
                        events.append(("breaker", False, str(exc)))
                if attempt > 1 and isinstance(exc, KailashError):
                    exc.message = f"{exc.message} (failed {attempt} attempts)"
                    exc.args = (exc.message,)
                    exc.attempts = attempt  # type: ignore[attr-defined]
                raise
            if breaker is not None:
                breaker.record(True)
                if outcome is not None:
                    outcome.append(True)
                if events is not None:
                    events.append(("breaker", True, None))
            if cache is not None and key is not None:
                cache.put(key, out)
                if events is not None:
                    events.append(("cache", key, out))
            outputs: dict[str, Any] = out
            return outputs

    def call(self, node: Node, inputs: dict[str, Any], ctx: Any, events: Events | None = None) -> dict[str, Any]:
        """Call ``node`` (sync) under this policy; ``events`` collects state changes for replay."""
        walk = _Walk(self._steps(node, inputs, events))
        for op, arg in walk:
            with walk:
                if op == "sleep":
                    time.sleep(arg or 0.0)
                else:
                    walk.send = attempt_sync(node, inputs, ctx, arg)
        return walk.result

    async def acall(self, node: Node, inputs: dict[str, Any], ctx: Any, executor: Any = None,
                    events: Events | None = None) -> dict[str, Any]:
        """Await ``node`` under this policy: async nodes on the loop, sync ones in ``executor``."""
        walk = _Walk(self._steps(node, inputs, events))
        for op, arg in walk:
            with walk:
                if op == "sleep":
                    await asyncio.sleep(arg or 0.0)
                else:
                    walk.send = await attempt_async(node, inputs, ctx, arg, executor)
        return walk.result

    def replay(self, events: Events) -> None:
        """Apply state changes recorded by a copy of this state (on a Dask worker) to this one."""
        for ev in events:
            if ev[0] == "breaker" and self.breaker is not None:
                self.breaker.record(ev[1], ev[2])
            elif ev[0] == "cache" and self.cache is not None:
                self.cache.put(ev[1], ev[2])


class _Walk:
    """A walk of :meth:`PolicyState._steps`, for a sync or an async driver (they differ only in how they wait).

    Iterating gives the steps (``("run", timeout)``, ``("sleep", s)``); the driver takes each
    inside ``with walk:``, setting :attr:`send` to a run's outputs. An Exception of the step
    is thrown into the steps at the next one; a BaseException (KeyboardInterrupt, a
    cancellation) closes them (the call records no outcome) and propagates.
    """

    def __init__(self, gen: Generator[tuple[str, float | None], Any, dict[str, Any]]) -> None:
        self.gen = gen
        self.send: Any = None  # what the step gave: a run's outputs
        self.error: BaseException | None = None  # what the step raised
        self.result: dict[str, Any] = {}  # the outputs, once the walk has ended

    def __iter__(self) -> _Walk:
        return self

    def __next__(self) -> tuple[str, float | None]:
        send, error, self.send, self.error = self.send, self.error, None, None
        try:
            return self.gen.throw(error) if error is not None else self.gen.send(send)
        except StopIteration as stop:
            self.result = stop.value
            raise StopIteration from None

    def __enter__(self) -> None:
        """One step."""

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> bool:
        if isinstance(exc, Exception):
            self.error = exc
            return True
        if exc is not None:
            self.gen.close()
        return False


_STATES: weakref.WeakKeyDictionary[NodePolicy, PolicyState] = weakref.WeakKeyDictionary()
_BREAKERS: weakref.WeakKeyDictionary[Any, CircuitBreaker] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def policy_state(spec: NodePolicy) -> PolicyState:
    """The live state of policy ``spec`` (made on first use; one per spec object, per process).

    Example:
        >>> from kailash.workflow import Workflow
        >>> from kailash.nodes.code.python import PythonCodeNode
        >>> wf = Workflow("p")
        >>> _ = wf.add_node("n", PythonCodeNode(code="result = 1"))
        >>> policy_state(wf.set_policy("n", circuit_breaker=3)).breaker.state
        'closed'
    """
    state = _STATES.get(spec)
    if state is not None:
        return state
    with _LOCK:
        state = _STATES.get(spec)
        if state is None:
            breaker = None
            b = spec.circuit_breaker
            if b is not None:
                breaker = b.shared
                if breaker is None:
                    breaker = _BREAKERS.get(b)
                    if breaker is None:
                        breaker = _BREAKERS[b] = CircuitBreaker(b.failure_threshold, b.reset_timeout)
            c = spec.cache
            cache = ResultCache(c.ttl, c.max_entries) if c is not None else None
            state = _STATES[spec] = PolicyState(spec, breaker, cache)
    return state
