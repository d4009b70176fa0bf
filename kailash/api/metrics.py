"""The gateway's ``/metrics`` endpoint: runs by status, node durations and queue depth, in the
Prometheus text format (written here: no client library needed).

:class:`GatewayMetrics` is fed by the gateway's runs (each :class:`~kailash.api.runs.LiveRun`
hands it its events) and rendered on each scrape. The series:

* ``kailash_runs_total{workflow, status}`` (counter): runs finished through this gateway
  process, ``status`` ``completed`` or ``failed``.
* ``kailash_runs_in_progress`` (gauge): runs running now.
* ``kailash_queue_depth`` (gauge): runs waiting to start (the callable in
  :attr:`GatewayMetrics.queue_depth`; a gateway sets it to its durable run queue's
  ``depth()`` — queued runs of every gateway on the same storage — and, without a queue,
  to the runs beyond the worker threads).
* ``kailash_node_duration_seconds{workflow, node}`` (histogram): how long each completed
  node took.

Counts start at zero when the process starts, as Prometheus expects of counters.
"""

import threading
from collections.abc import Callable
from typing import Any

__all__ = ["GatewayMetrics", "BUCKETS", "CONTENT_TYPE", "install"]

#: the upper bounds (seconds) of the node duration histogram's buckets
BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0)
#: the Prometheus text exposition format
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


#: at most this many label sets per metric: workflow names and node ids come from uploads (a tenant's
#: too), so beyond it new ones are counted under ``workflow="_other"`` (and ``node="_other"``)
MAX_SERIES = 2000
OTHER = "_other"


def _label(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class GatewayMetrics:
    """What ``/metrics`` reports, gathered from the gateway's run events (thread-safe).

    Attributes:
        queue_depth: ``() -> int``, the runs waiting to start; ``None``: runs beyond the
            worker threads (``in_progress - max_workers``, at least 0).

    Example:
        >>> m = GatewayMetrics()
        >>> m.event("etl", {"event": "node_completed", "node_id": "load", "duration": 0.02})
        >>> m.event("etl", {"event": "run_completed"})
        >>> 'kailash_runs_total{workflow="etl",status="completed"} 1' in m.render()
        True
    """

    def __init__(self, *, in_progress: Callable[[], int] | None = None, max_workers: int = 0) -> None:
        self._lock = threading.Lock()
        self._runs: dict[tuple[str, str], int] = {}
        self._nodes: dict[tuple[str, str], list[float]] = {}  # bucket counts..., sum, count
        self.in_progress = in_progress or (lambda: 0)
        self.max_workers = max_workers
        self.queue_depth: Callable[[], int] | None = None

    def event(self, workflow: str, event: dict[str, Any]) -> None:
        """Count one run event (``node_completed`` with ``duration``, ``run_completed``, ``run_failed``)."""
        kind = event.get("event")
        if kind == "node_completed":
            duration = event.get("duration")
            if duration is None:
                return
            key = (workflow, str(event.get("node_id")))
            with self._lock:
                cells = self._nodes.get(key)
                if cells is None:
                    if len(self._nodes) >= MAX_SERIES:
                        key = (OTHER, OTHER)
                        cells = self._nodes.get(key)
                    if cells is None:
                        cells = self._nodes[key] = [0.0] * (len(BUCKETS) + 2)
                for i, bound in enumerate(BUCKETS):
                    if duration <= bound:
                        cells[i] += 1
                cells[-2] += float(duration)
                cells[-1] += 1
        elif kind in ("run_completed", "run_failed"):
            key = (workflow, "completed" if kind == "run_completed" else "failed")
            with self._lock:
                if key not in self._runs and len(self._runs) >= MAX_SERIES:
                    key = (OTHER, key[1])
                self._runs[key] = self._runs.get(key, 0) + 1

    def _depth(self, running: int) -> int:
        if self.queue_depth is not None:
            return int(self.queue_depth())
        return max(0, running - self.max_workers) if self.max_workers else 0

    def render(self) -> str:
        """The metrics in the Prometheus text format."""
        running = int(self.in_progress())
        with self._lock:
            runs = sorted(self._runs.items())
            nodes = sorted((k, list(v)) for k, v in self._nodes.items())
        out = ["# HELP kailash_runs_total Runs finished through this gateway process, by workflow and status.",
               "# TYPE kailash_runs_total counter"]
        out += [f'kailash_runs_total{{workflow="{_label(w)}",status="{s}"}} {n}' for (w, s), n in runs]
        out += ["# HELP kailash_runs_in_progress Runs running now.", "# TYPE kailash_runs_in_progress gauge",
                f"kailash_runs_in_progress {running}",
                "# HELP kailash_queue_depth Runs waiting to start.", "# TYPE kailash_queue_depth gauge",
                f"kailash_queue_depth {self._depth(running)}",
                "# HELP kailash_node_duration_seconds How long each completed node took.",
                "# TYPE kailash_node_duration_seconds histogram"]
        for (workflow, node), cells in nodes:
            labels = f'workflow="{_label(workflow)}",node="{_label(node)}"'
            for bound, count in zip(BUCKETS, cells, strict=False):
                out.append(f'kailash_node_duration_seconds_bucket{{{labels},le="{_number(bound)}"}} {int(count)}')
            out.append(f'kailash_node_duration_seconds_bucket{{{labels},le="+Inf"}} {int(cells[-1])}')
            out.append(f"kailash_node_duration_seconds_sum{{{labels}}} {cells[-2]!r}")
            out.append(f"kailash_node_duration_seconds_count{{{labels}}} {int(cells[-1])}")
        return "\n".join(out) + "\n"


def install(app: Any, gw: Any) -> None:
    """Add ``GET /metrics`` (a key of the gateway itself; a tenant's key may not read it)."""
    from fastapi import Request  # evaluated here (no postponed annotations in this module): FastAPI reads it
    from starlette.responses import Response

    from kailash.api.middleware import principal_of
    from kailash.api.responses import ApiError

    @app.get("/metrics", tags=["gateway"], summary="Prometheus metrics: runs by status, node durations, queue depth",
             response_class=Response, responses={200: {"content": {CONTENT_TYPE: {}}}})
    def metrics(request: Request) -> Response:  # a plain def: rendered in a thread (queue depth reads the database)
        principal = principal_of(request.scope)
        if principal is not None and principal.tenant_id is not None:
            raise ApiError(403, "metrics_refused", "/metrics covers every tenant's runs: read it with a key of "
                           "the gateway itself, not a tenant's")
        return Response(gw.metrics.render(), media_type=CONTENT_TYPE)
