"""Stream-run options, and which runs are stream runs (see :mod:`kailash.runtime.streaming`).

Options come from the workflow's ``metadata["stream"]`` and a runtime's ``stream=``
argument, checked once into a frozen :class:`StreamOptions`. Whether a run streams is
asked of the plan's stream-source nodes (:attr:`ExecutionPlan.stream_sources`) with their
configuration and runtime parameters, before anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from kailash.errors import NodeConfigurationError

if TYPE_CHECKING:
    from kailash.workflow.plan import ExecutionPlan, Step

__all__ = ["StreamOptions", "stream_options", "stream_source", "stream_job", "stoppable", "with_options"]

Outputs = dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class StreamOptions:
    """How a stream run runs (``stream=`` of a runtime's ``execute``, or ``metadata["stream"]``).

    Attributes:
        max_events: stop after this many events (None: no limit).
        timeout: stop after this many seconds without an event (None: wait for ever).
        stop: a ``threading.Event`` (or anything with ``is_set()``) or a callable returning
            True to stop; checked between events and while waiting.
        on_event_error: ``"fail"`` (the run fails at the first failing event) or
            ``"dead_letter"`` (the event and its error go to ``dead_letter``; the run goes on).
        dead_letter: a JSON-lines file path, a writer node (called with ``data=record``),
            ``{"connection_string": ..., "table": ...}`` (a SQL table), or a callable.
        window: events processed at once (1: strictly in order); events with the same key
            stay in order.
        handle_signals: SIGINT/SIGTERM stop the run gracefully (main thread only).
        progress_every: seconds between ``stream_progress`` events to observers.
    """

    max_events: int | None = None
    timeout: float | None = None
    stop: Any = None
    on_event_error: str = "fail"
    dead_letter: Any = None
    window: int = 1
    handle_signals: bool = True
    progress_every: float = 0.5


def stream_options(given: Any, workflow: Any) -> StreamOptions:
    """The options of a stream run: the workflow's ``metadata["stream"]``, then ``given`` on top."""
    names = {f.name for f in fields(StreamOptions)}
    merged: dict[str, Any] = {}
    meta = getattr(workflow, "metadata", None) or {}
    for source, where in ((meta.get("stream"), "workflow metadata 'stream'"), (given, "stream")):
        if source is None:
            continue
        if isinstance(source, StreamOptions):
            source = {f.name: getattr(source, f.name) for f in fields(StreamOptions)}
        if not isinstance(source, dict):
            raise NodeConfigurationError(f"{where} must be a mapping of stream options, got {type(source).__name__}",
                                         parameter="stream", expected="dict", got=type(source).__name__)
        unknown = sorted(set(source) - names)
        if unknown:
            raise NodeConfigurationError(f"{where}: unknown option(s) {', '.join(unknown)} (known: "
                                         f"{', '.join(sorted(names))})", parameter=unknown[0])
        merged.update(source)
    opts = StreamOptions(**merged)
    _check(opts)
    return opts


def _check(o: StreamOptions) -> None:
    def bad(name: str, expected: str, got: Any) -> NodeConfigurationError:
        return NodeConfigurationError(f"stream option '{name}' must be {expected}, got {got!r}", parameter=name,
                                      expected=expected, got=got)

    if o.max_events is not None and (type(o.max_events) is not int or o.max_events < 1):
        raise bad("max_events", "a positive integer", o.max_events)
    if o.timeout is not None and (isinstance(o.timeout, bool) or not isinstance(o.timeout, (int, float))
                                  or o.timeout <= 0):
        raise bad("timeout", "a positive number of seconds", o.timeout)
    if o.on_event_error not in ("fail", "dead_letter"):
        raise bad("on_event_error", "'fail' or 'dead_letter'", o.on_event_error)
    if o.on_event_error == "dead_letter" and o.dead_letter is None:
        raise bad("dead_letter", "a sink (file path, writer node, table or callable) with on_event_error="
                  "'dead_letter'", None)
    if type(o.window) is not int or o.window < 1:
        raise bad("window", "an integer >= 1", o.window)
    if o.stop is not None and not (callable(o.stop) or hasattr(o.stop, "is_set")):
        raise bad("stop", "a threading.Event or a callable", type(o.stop).__name__)


def stream_source(plan: ExecutionPlan, overrides: dict[str, Outputs]) -> Step | None:
    """The step whose node streams with this configuration, if any (at most one may)."""
    found = []
    for sid in plan.stream_sources:
        step = plan.by_id[sid]
        node = step.node
        guess = {**step.base, **node.config, **(overrides.get(sid) or {})}
        if node.streams(guess):  # type: ignore[attr-defined]
            found.append(step)
    if len(found) > 1:
        raise NodeConfigurationError(
            f"workflow '{plan.name}' has more than one stream source ({', '.join(s.id for s in found)}); "
            "a stream run reads one stream (set delivery='batch' on the others, or split the workflow)",
            node_id=found[1].id, parameter="delivery", expected="one stream source")
    return found[0] if found else None


def stream_job(plan: ExecutionPlan, overrides: dict[str, Outputs], stream: Any) -> tuple[Step, StreamOptions] | None:
    """``(source step, options)`` when this run is a stream run, else None (an ordinary run).

    Raises a clear error when ``stream`` options are given to a workflow without a stream source.
    """
    src = stream_source(plan, overrides) if plan.stream_sources else None
    if src is None:
        if stream is not None:
            raise NodeConfigurationError(
                f"stream options were given but workflow '{plan.name}' has no stream source (a node such as "
                "EventStreamNode with delivery='per_event')", parameter="stream", expected="a stream workflow")
        return None
    return src, stream_options(stream, plan.workflow)


def stoppable(workflow: Any, parameters: dict[str, Any] | None, stop: Any) -> dict[str, Any] | None:
    """``{"stop": stop, "handle_signals": False}`` when running ``workflow`` with ``parameters`` is a
    stream run, else None: the options a server passes to let a client stop the run (the gateway)."""
    plan = workflow.compile()
    if not plan.stream_sources or stream_source(plan, plan.prepare(parameters)) is None:
        return None
    return {"stop": stop, "handle_signals": False}


def with_options(options: StreamOptions, **changes: Any) -> StreamOptions:
    """``options`` with some fields changed (checked again)."""
    out = replace(options, **changes)
    _check(out)
    return out
