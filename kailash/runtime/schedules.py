"""Schedules: cron and interval triggers for saved workflows, fired exactly once by any number of gateways.

A :class:`Schedule` names a workflow, its parameters, a cron expression (evaluated in
its timezone) or a fixed interval, and a catch-up policy. The :class:`Scheduler` is
driven by :meth:`Scheduler.tick`: each call claims the schedules that are due (one
row lock at a time in the store, see :mod:`kailash.runtime.schedule_store`), works out
which fire times to run, records each fire under a unique ``(schedule_id, fire_at)``
key and hands it to ``enqueue`` with the deterministic run id
``sched-<schedule_id>-<fire epoch>``, then advances the schedule's ``next_fire_at`` —
all in one transaction. A fire is enqueued only by the transaction that inserted it,
so two gateways ticking on one database never both enqueue it; if the transaction
fails after ``enqueue`` returned, the retry enqueues the same run id, which an
idempotent queue refuses. The clock is injected (``tick(now)``) so tests control time.

Catch-up after downtime (or a tick that came late), for the fire times missed:

``skip`` (default)
    only a fire at most ``grace`` seconds late runs; older missed fires are dropped.
``latest``
    the most recent missed fire runs once; older ones are dropped.
``all``
    every missed fire runs, oldest first (at most ``max_catchup``, the most recent).

A paused schedule misses nothing: resuming it starts from the next fire after now.
This module decides nothing about HTTP or tenants' rights; the gateway does.
"""

from __future__ import annotations

import logging
import math
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from kailash.errors import ScheduleError

__all__ = ["Schedule", "Fire", "Catchup", "CATCHUP_POLICIES", "Enqueue", "Scheduler", "TickReport",
           "parse_interval", "check_schedule", "next_fire_after", "due_fires", "fire_run_id"]

logger = logging.getLogger("kailash.schedules")

Catchup = Literal["skip", "latest", "all"]
CATCHUP_POLICIES: tuple[str, ...] = ("skip", "latest", "all")
MAX_INTERVAL = 366 * 86400


class Enqueue(Protocol):
    """Hand one run to the run queue; ``False`` when ``run_id`` was already queued (idempotent)."""

    def __call__(self, *, run_id: str, workflow: str, parameters: dict[str, Any], tenant_id: str | None = None,
                 options: dict[str, Any] | None = None) -> bool: ...


@dataclass(frozen=True, kw_only=True, slots=True)
class Schedule:
    """One schedule of one saved workflow.

    Attributes:
        id: its id (``s_`` and 16 hex digits).
        workflow: the workflow's name in its namespace.
        tenant_id: the tenant it belongs to (``None``: the gateway's own namespace).
        cron: a cron expression (5 fields, or 6 with seconds), or ``None``.
        every: the interval in whole seconds, or ``None`` (exactly one of ``cron``/``every``).
        timezone: the IANA timezone the cron expression is read in (``UTC`` by default).
        parameters: the run parameters, ``{node_id: {name: value}}``.
        catchup: what to do about fires missed while no scheduler ran (``skip``, ``latest``, ``all``).
        enabled: ``False`` while paused.
        next_fire_at: the next fire time (Unix seconds), ``None`` while paused.
        created_at, updated_at: Unix seconds.
    """

    id: str
    workflow: str
    tenant_id: str | None = None
    cron: str | None = None
    every: int | None = None
    timezone: str = "UTC"
    parameters: dict[str, Any] = field(default_factory=dict)
    catchup: Catchup = "skip"
    enabled: bool = True
    next_fire_at: float | None = None
    created_at: float = 0.0
    updated_at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The schedule as JSON-ready data."""
        return {"id": self.id, "workflow": self.workflow, "tenant_id": self.tenant_id, "cron": self.cron,
                "every": self.every, "timezone": self.timezone, "parameters": self.parameters,
                "catchup": self.catchup, "enabled": self.enabled, "next_fire_at": self.next_fire_at,
                "created_at": self.created_at, "updated_at": self.updated_at}


@dataclass(frozen=True, kw_only=True, slots=True)
class Fire:
    """One fire of a schedule: the run it enqueued for the fire time ``fire_at``."""

    schedule_id: str
    fire_at: float
    run_id: str
    enqueued_at: float

    def to_dict(self) -> dict[str, Any]:
        return {"schedule_id": self.schedule_id, "fire_at": self.fire_at, "run_id": self.run_id,
                "enqueued_at": self.enqueued_at}


def new_schedule_id() -> str:
    return "s_" + secrets.token_hex(8)


def fire_run_id(schedule_id: str, fire_at: float) -> str:
    """The run id of a schedule's fire: the same for every gateway, so a queue can refuse a duplicate."""
    return f"sched-{schedule_id}-{int(fire_at)}"


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_INTERVAL = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")


def parse_interval(value: Any) -> int:
    """Whole seconds from ``30``, ``"30s"``, ``"5m"``, ``"2h"`` or ``"1d"``.

    Example:
        >>> parse_interval("5m"), parse_interval(90)
        (300, 90)
    """
    seconds: int | None = None
    if type(value) is int:
        seconds = value
    elif type(value) is float and value.is_integer():
        seconds = int(value)
    elif type(value) is str:
        m = _INTERVAL.match(value)
        if m:
            seconds = int(m.group(1)) * _UNITS[m.group(2) or "s"]
    if seconds is None or not 1 <= seconds <= MAX_INTERVAL:
        raise ScheduleError(f"interval {value!r} is not valid: give whole seconds (30) or a number with a unit "
                            "s, m, h or d ('30s', '5m'), from 1 s to 366 d", parameter="every",
                            expected="'30s', '5m', '2h', '1d' or seconds >= 1", got=repr(value)[:80])
    return seconds


def _zone(name: Any) -> Any:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if type(name) is not str or not name or len(name) > 64:
        raise ScheduleError(f"timezone {name!r} is not valid: give an IANA name like 'UTC' or 'Europe/Berlin'",
                            parameter="timezone", expected="an IANA timezone name", got=repr(name)[:80])
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"unknown timezone '{name}': give an IANA name like 'UTC' or 'Europe/Berlin'",
                            parameter="timezone", expected="an IANA timezone name", got=name) from None


def _croniter() -> Any:
    try:
        from croniter import croniter
    except ImportError:
        raise ImportError("cron schedules need croniter: pip install 'kailash[api]'") from None
    return croniter


def _check_cron(expr: Any) -> str:
    if type(expr) is not str or not expr.strip() or len(expr) > 200:
        raise ScheduleError("cron expression must be a non-empty string like '*/5 * * * *'", parameter="cron",
                            expected="a cron expression", got=repr(expr)[:80])
    text: str = " ".join(expr.split())
    croniter = _croniter()
    if len(text.split(" ")) not in (5, 6) or not croniter.is_valid(text):
        raise ScheduleError(f"cron expression '{text}' is not valid: use 5 fields 'minute hour day month weekday' "
                            "(or 6 with seconds last), like '*/5 * * * *'", parameter="cron",
                            expected="minute hour day-of-month month day-of-week", got=text)
    try:  # valid syntax that never fires ('0 0 30 2 *', February 30th) fails only when its next time is sought
        croniter(text, datetime.fromtimestamp(math.floor(time.time()), _zone("UTC"))).get_next(float)
    except Exception:
        raise ScheduleError(f"cron expression '{text}' never fires (no such date)", parameter="cron",
                            expected="a cron expression that names a real date", got=text) from None
    return text


#: the JSON size of one schedule's parameters (each fire copies them into the run queue)
MAX_PARAMETERS_BYTES = 64 * 1024


def _json_size(value: Any) -> int:
    """Bytes of ``value`` as JSON (-1: not JSON)."""
    import json

    try:
        return len(json.dumps(value, separators=(",", ":")).encode())
    except (TypeError, ValueError, RecursionError):
        return -1


def check_schedule(*, workflow: Any, cron: Any = None, every: Any = None, timezone: Any = "UTC",
                   parameters: Any = None, catchup: Any = "skip") -> dict[str, Any]:
    """The checked fields of a schedule (``workflow, cron, every, timezone, parameters, catchup``).

    Raises:
        ScheduleError: the first invalid field, named in ``parameter``.
    """
    if type(workflow) is not str or not workflow or len(workflow) > 128:
        raise ScheduleError("a schedule needs the name of a saved workflow", parameter="workflow",
                            expected="a workflow name", got=repr(workflow)[:80])
    if (cron is None) == (every is None):
        raise ScheduleError("give exactly one of 'cron' (a cron expression) or 'every' (an interval like '30s')",
                            parameter="cron" if cron is None else "every", expected="cron or every, not both")
    cron_expr = _check_cron(cron) if cron is not None else None
    seconds = parse_interval(every) if every is not None else None
    tz = "UTC" if timezone is None else timezone
    _zone(tz)
    params = {} if parameters is None else parameters
    if type(params) is not dict:
        raise ScheduleError("parameters must be an object {node_id: {name: value}}", parameter="parameters",
                            expected="an object", got=type(params).__name__)
    size = _json_size(params)
    if size > MAX_PARAMETERS_BYTES:  # stored, then copied into the queue at every fire
        raise ScheduleError(f"a schedule's parameters may hold at most {MAX_PARAMETERS_BYTES} bytes of JSON, got "
                            f"{size if size >= 0 else 'values that are not JSON'}: keep large data in a file or "
                            "table the workflow reads", parameter="parameters",
                            expected=f"at most {MAX_PARAMETERS_BYTES} bytes", got=size)
    if catchup not in CATCHUP_POLICIES:
        raise ScheduleError(f"unknown catch-up policy {catchup!r}: use skip, latest or all", parameter="catchup",
                            expected="skip, latest or all", got=repr(catchup)[:80])
    return {"workflow": workflow, "cron": cron_expr, "every": seconds, "timezone": tz, "parameters": params,
            "catchup": catchup}


def next_fire_after(schedule: Schedule, t: float) -> float:
    """The first fire time strictly after ``t``.

    Interval schedules fire at ``created_at + k * every``; cron schedules at the
    expression's times in the schedule's timezone (whole seconds either way).
    """
    if schedule.every is not None:
        anchor = math.floor(schedule.created_at)
        k = max(math.floor((t - anchor) / schedule.every) + 1, 1)
        return float(anchor + k * schedule.every)
    it = _croniter()(schedule.cron, datetime.fromtimestamp(math.floor(t), _zone(schedule.timezone)))
    return float(it.get_next(float))


def _latest_at_or_before(schedule: Schedule, t: float) -> float:
    """The last fire time ``<= t`` (whole seconds)."""
    if schedule.every is not None:
        anchor = math.floor(schedule.created_at)
        k = math.floor((math.floor(t) - anchor) / schedule.every)
        return float(anchor + k * schedule.every)
    it = _croniter()(schedule.cron, datetime.fromtimestamp(math.floor(t) + 1, _zone(schedule.timezone)))
    return float(it.get_prev(float))


def due_fires(schedule: Schedule, now: float, *, grace: float, max_catchup: int) -> tuple[list[float], int]:
    """``(fire times to run now, oldest first; how many missed fires were dropped)``.

    The fires considered are those from ``schedule.next_fire_at`` up to ``now``; the
    catch-up policy picks which run (see the module docstring).
    """
    first = schedule.next_fire_at
    if first is None or first > now:
        return [], 0
    latest = _latest_at_or_before(schedule, now)
    if latest < first:  # next_fire_at is not on the schedule's grid (it was changed): fire it once
        latest = first
    limit = max_catchup if schedule.catchup == "all" else 1
    fires = [latest]
    back = _walk_back(schedule, latest)
    while len(fires) < limit:
        prev = next(back)
        if prev < first:
            break
        fires.append(prev)
    dropped = _count_between(schedule, first, fires[-1])
    if schedule.catchup == "skip" and now - latest > grace:
        fires, dropped = [], dropped + 1
    fires.reverse()
    return fires, dropped


def _walk_back(schedule: Schedule, fire: float) -> Iterator[float]:
    """The fire times before ``fire``, newest first (one cron iterator: not one per step)."""
    if schedule.every is not None:
        t = fire
        while True:
            t -= schedule.every
            yield t
    it = _croniter()(schedule.cron, datetime.fromtimestamp(fire, _zone(schedule.timezone)))
    while True:
        yield float(it.get_prev(float))


#: missed cron fires counted one by one at most (each costs croniter ~60 us; the count is only reported)
MAX_CRON_COUNT = 1000


def _count_between(schedule: Schedule, first: float, oldest_kept: float) -> int:
    """How many fire times lie in ``[first, oldest_kept)`` (counted exactly for intervals, up to
    :data:`MAX_CRON_COUNT` for cron: a per-second cron after days of downtime must not stall the tick)."""
    if oldest_kept <= first:
        return 0
    if schedule.every is not None:
        return int((oldest_kept - first) // schedule.every)
    n = 0
    back = _walk_back(schedule, oldest_kept)
    while n < MAX_CRON_COUNT:
        if next(back) < first:
            break
        n += 1
    return n


@dataclass(frozen=True, kw_only=True, slots=True)
class TickReport:
    """What one :meth:`Scheduler.tick` did: the fires it enqueued, the missed fires it dropped, schedules that failed."""

    fires: tuple[Fire, ...] = ()
    dropped: int = 0
    failed: tuple[str, ...] = ()


class Scheduler:
    """Fire due schedules from a store into a run queue.

    Args:
        store: a schedule store (:mod:`kailash.runtime.schedule_store`).
        enqueue: the queue's ``enqueue(*, run_id, workflow, parameters, tenant_id, options)``.
        clock: the time source when :meth:`tick` is given no ``now`` (``time.time``).
        grace: seconds a fire may be late and still run under the ``skip`` policy.
        max_catchup: at most this many missed fires of one schedule run under the ``all`` policy.
        batch: at most this many schedules are handled per tick.

    Example:
        >>> import tempfile, os
        >>> from kailash.runtime.schedule_store import SQLiteScheduleStore
        >>> store = SQLiteScheduleStore(os.path.join(tempfile.mkdtemp(), "schedules.db"))
        >>> queued = []
        >>> scheduler = Scheduler(store, lambda **run: queued.append(run["run_id"]) or True)
        >>> s = store.add(workflow="etl", every=60, now=1_000_000.0)
        >>> [f.fire_at for f in scheduler.tick(1_000_060.0).fires]
        [1000060.0]
        >>> queued == [f"sched-{s.id}-1000060"]
        True
    """

    def __init__(self, store: Any, enqueue: Enqueue | Callable[..., bool], *,
                 clock: Callable[[], float] = time.time, grace: float = 60.0, max_catchup: int = 1000,
                 batch: int = 100) -> None:
        self.store = store
        self.enqueue = enqueue
        self.clock = clock
        self.grace = grace
        self.max_catchup = max_catchup
        self.batch = batch

    def tick(self, now: float | None = None) -> TickReport:
        """Enqueue every due fire once; advance the schedules. Safe to call from several processes at once."""
        now = self.clock() if now is None else now
        fired: list[Fire] = []
        dropped = 0
        failed: list[str] = []
        seen: set[str] = set()
        for _ in range(self.batch):
            current: str | None = None
            before = len(fired)
            try:
                with self.store.claim_due(now, exclude=seen) as claim:
                    if claim.schedule is None:
                        break
                    schedule = claim.schedule
                    current = schedule.id
                    seen.add(current)
                    fires, missed = due_fires(schedule, now, grace=self.grace, max_catchup=self.max_catchup)
                    for fire_at in fires:
                        run_id = fire_run_id(schedule.id, fire_at)
                        if claim.record_fire(fire_at, run_id, now):  # only the inserting transaction enqueues
                            self.enqueue(run_id=run_id, workflow=schedule.workflow,
                                         parameters=dict(schedule.parameters), tenant_id=schedule.tenant_id,
                                         options={"schedule_id": schedule.id, "fire_at": fire_at})
                            fired.append(Fire(schedule_id=schedule.id, fire_at=fire_at, run_id=run_id,
                                              enqueued_at=now))
                    claim.advance(next_fire_after(schedule, now))
            except Exception as exc:  # the claim rolled back: this schedule is retried next tick, the others go on
                if current is None:  # the store itself failed
                    raise
                del fired[before:]
                failed.append(current)
                logger.warning("schedule %s: enqueue failed (%s); retried next tick", current, type(exc).__name__)
                continue
            dropped += missed
            if missed:
                logger.info("schedule %s: %d missed fire(s) dropped (catch-up policy '%s')",
                            current, missed, schedule.catchup)
        return TickReport(fires=tuple(fired), dropped=dropped, failed=tuple(failed))
