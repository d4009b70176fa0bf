"""OpenTelemetry spans for runs and nodes, from the runtime's observer hook (off by default).

Install the extra (``pip install 'kailash[otel]'``: ``opentelemetry-api`` and
``opentelemetry-sdk``), then either

* set ``KAILASH_OTEL=1`` in the environment (read when ``kailash.runtime`` is imported), or
  call :func:`enable` — every run of every runtime in the process is traced; or
* give one runtime the observer: ``LocalRuntime(observers=[OpenTelemetryObserver()])``.

Each run is a span ``kailash.run <workflow>`` (a child of whatever span is current when the
run starts, e.g. an instrumented web request), and each node a child span
``kailash.node <node_id>``, with the attributes ``kailash.workflow``, ``kailash.run_id``,
``kailash.node_id``, ``kailash.node_type`` and ``kailash.status`` (``completed``,
``failed``, ``skipped``); a failed node or run has the error status and its (redacted)
error text. Spans go to the tracer provider given, else OpenTelemetry's global one (set
up by your exporter configuration). Dask workers' nodes are traced from the scheduler's
side (start and end as the scheduler sees them).

This module imports nothing from OpenTelemetry until a span is to be made.
"""

from __future__ import annotations

import os
import threading
from typing import Any

__all__ = ["OpenTelemetryObserver", "enable", "disable", "enabled", "ENV"]

ENV = "KAILASH_OTEL"
_observer: OpenTelemetryObserver | None = None


class OpenTelemetryObserver:
    """A runtime observer that turns run events into OpenTelemetry spans.

    Args:
        tracer_provider: where the spans go (default: OpenTelemetry's global provider).
    """

    def __init__(self, tracer_provider: Any = None) -> None:
        try:
            from opentelemetry import trace
        except ImportError:
            from kailash.errors import NodeConfigurationError

            raise NodeConfigurationError(
                "OpenTelemetry tracing needs the otel extra: pip install 'kailash[otel]'",
                parameter="tracing", expected="opentelemetry-api and opentelemetry-sdk installed") from None
        self._trace = trace
        self._tracer = (tracer_provider.get_tracer("kailash") if tracer_provider is not None
                        else trace.get_tracer("kailash"))
        self._runs: dict[str, Any] = {}
        self._nodes: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        run_id = str(event.get("run_id"))
        if kind == "run_started":
            workflow = str(event.get("workflow"))
            span = self._tracer.start_span(f"kailash.run {workflow}", attributes={
                "kailash.workflow": workflow, "kailash.run_id": run_id})
            with self._lock:
                self._runs[run_id] = span
        elif kind == "node_started":
            self._start_node(run_id, event)
        elif kind in ("node_completed", "node_failed", "node_skipped"):
            key = (run_id, str(event.get("node_id")))
            with self._lock:
                span = self._nodes.pop(key, None)
            if span is None:  # skipped (or reused) without a start: a span of no length
                span = self._start_node(run_id, event, keep=False)
            status = kind[len("node_"):]
            span.set_attribute("kailash.status", status)
            if kind == "node_failed":
                self._fail(span, event.get("error"))
            span.end()
        elif kind in ("model_call", "tool_call"):  # an agent's call (kailash.nodes.calls): an event of its node's span
            with self._lock:
                span = self._nodes.get((run_id, str(event.get("node_id"))))
            if span is not None:
                span.add_event(f"kailash.{kind}", attributes={
                    f"kailash.{k}": v for k in ("provider", "model", "server", "tool", "operation", "outcome", "ok",
                                                "error", "latency_ms", "prompt_tokens", "completion_tokens")
                    if isinstance(v := event.get(k), (str, bool, int, float))})
        elif kind in ("run_completed", "run_failed"):
            with self._lock:
                span = self._runs.pop(run_id, None)
                stale = [k for k in self._nodes if k[0] == run_id]
                leftovers = [self._nodes.pop(k) for k in stale]
            for node_span in leftovers:  # still running when the run ended (a concurrent failure)
                node_span.end()
            if span is None:
                return
            span.set_attribute("kailash.status", kind[len("run_"):])
            if kind == "run_failed":
                if event.get("error_node"):
                    span.set_attribute("kailash.error_node", str(event["error_node"]))
                self._fail(span, event.get("error"))
            span.end()

    def _start_node(self, run_id: str, event: dict[str, Any], keep: bool = True) -> Any:
        node_id = str(event.get("node_id"))
        with self._lock:
            parent = self._runs.get(run_id)
        context = self._trace.set_span_in_context(parent) if parent is not None else None
        attributes = {"kailash.run_id": run_id, "kailash.node_id": node_id}
        if event.get("node_type"):
            attributes["kailash.node_type"] = str(event["node_type"])
        if event.get("workflow"):
            attributes["kailash.workflow"] = str(event["workflow"])
        elif parent is not None and getattr(parent, "attributes", None):
            attributes["kailash.workflow"] = str(parent.attributes.get("kailash.workflow", ""))
        span = self._tracer.start_span(f"kailash.node {node_id}", context=context, attributes=attributes)
        if keep:
            with self._lock:
                self._nodes[(run_id, node_id)] = span
        return span

    def _fail(self, span: Any, error: Any) -> None:
        from opentelemetry.trace import Status, StatusCode

        text = str(error) if error is not None else "failed"
        span.set_status(Status(StatusCode.ERROR, text[:1000]))
        span.set_attribute("kailash.error", text[:4000])


def enable(tracer_provider: Any = None) -> OpenTelemetryObserver:
    """Trace every run in this process from now on (spans to ``tracer_provider``, or the global one)."""
    global _observer
    _observer = OpenTelemetryObserver(tracer_provider)
    return _observer


def disable() -> None:
    """Stop tracing every run (observers given to a runtime keep working)."""
    global _observer
    _observer = None


def enabled() -> OpenTelemetryObserver | None:
    """The process-wide observer, if tracing is on (``KAILASH_OTEL=1`` or :func:`enable`)."""
    return _observer


if os.environ.get(ENV, "").strip().lower() in ("1", "true", "yes", "on"):
    try:
        enable()
    except Exception:  # the extra is missing: say so once, run untraced
        import logging

        logging.getLogger("kailash.runtime").warning(
            "%s is set but OpenTelemetry is not installed: pip install 'kailash[otel]'", ENV)
