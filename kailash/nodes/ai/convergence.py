"""ConvergenceDetectorNode: decide whether an iterative agent process should stop.

Pure decision logic over an iteration history (``[{"quality": 0.6, ...}, ...]``): hard
limits first (timeout, ``max_iterations``), then ``min_iterations``, then the quality
target, then the improvement plateau. The node can also keep the history itself when
fed one ``quality`` per run. No I/O.
"""

from __future__ import annotations

import time
from typing import Any

from kailash.errors import NodeConfigurationError
from kailash.nodes.base import Node, NodeParameter, register_node

__all__ = ["ConvergenceDetectorNode", "decide"]


def decide(
    history: list[dict[str, Any]],
    *,
    quality_threshold: float = 0.85,
    improvement_threshold: float = 0.02,
    max_iterations: int = 10,
    min_iterations: int = 1,
    timeout: float | None = None,
    elapsed_seconds: float | None = None,
    patience: int = 1,
) -> dict[str, Any]:
    """The stop decision for ``history`` (see :class:`ConvergenceDetectorNode`)."""
    n = len(history)
    qualities = [float(h.get("quality") or 0.0) for h in history]
    latest = qualities[-1] if qualities else None
    improvement = qualities[-1] - qualities[-2] if n >= 2 else None
    best = max(range(n), key=lambda i: (qualities[i], -i)) if n else None
    out: dict[str, Any] = {
        "iterations": n, "latest_quality": latest, "improvement": None if improvement is None else round(improvement, 6),
        "best_quality": qualities[best] if best is not None else None,
        "best_iteration": best + 1 if best is not None else None,
        "elapsed_seconds": None if elapsed_seconds is None else round(elapsed_seconds, 3),
    }

    def verdict(stop: bool, converged: bool, reason: str, detail: str) -> dict[str, Any]:
        status = "converged" if converged else "plateau" if reason == "improvement_threshold" else \
            "stopped" if stop else "running"
        return {**out, "should_stop": stop, "converged": converged, "status": status, "reason": reason,
                "detail": detail}

    if n == 0:
        return verdict(False, False, "no_iterations", "no iteration has run yet")
    if timeout is not None and elapsed_seconds is not None and elapsed_seconds >= timeout:
        return verdict(True, False, "timeout", f"{elapsed_seconds:.1f}s elapsed, limit {timeout:g}s")
    if n >= max_iterations:
        reached = latest is not None and latest >= quality_threshold
        return verdict(True, reached, "max_iterations", f"{n} iterations, limit {max_iterations}")
    if n < min_iterations:
        return verdict(False, False, "min_iterations", f"{n} of at least {min_iterations} iterations run")
    if latest is not None and latest >= quality_threshold:
        return verdict(True, True, "quality_threshold", f"quality {latest:.3f} >= {quality_threshold:g}")
    if n >= 2 and n > patience:
        recent = [qualities[i] - qualities[i - 1] for i in range(n - patience, n)]
        if all(d < improvement_threshold for d in recent):
            # a plateau below the target is a plateau: stop, but it did not converge
            return verdict(True, False, "improvement_threshold",
                           f"plateau at quality {latest:.3f} (below {quality_threshold:g}): improvement "
                           f"{recent[-1]:+.3f} < {improvement_threshold:g} for {patience} iteration(s)")
    return verdict(False, False, "continue", f"quality {latest:.3f} below {quality_threshold:g} and still improving")


def _elapsed(history: list[dict[str, Any]], start_time: float | None) -> float | None:
    if start_time is not None:
        return time.time() - float(start_time)
    if history and history[-1].get("elapsed_seconds") is not None:
        return float(history[-1]["elapsed_seconds"])
    durations = [float(h["duration"]) for h in history if isinstance(h.get("duration"), (int, float))]
    if durations:
        return sum(durations)
    stamps = [float(h["timestamp"]) for h in history if isinstance(h.get("timestamp"), (int, float))]
    return time.time() - stamps[0] if stamps else None


@register_node()
class ConvergenceDetectorNode(Node):
    """Say whether to stop iterating, and why.

    Stops on ``timeout`` (seconds, from ``elapsed_seconds``, ``start_time``, the entries'
    ``duration`` or ``timestamp``), on ``max_iterations``, on reaching
    ``quality_threshold``, or when quality improved by less than
    ``improvement_threshold`` for ``patience`` iterations — but never before
    ``min_iterations`` (except on a hard limit). Only reaching the quality target is
    ``converged``; a stall below it stops with ``status: "plateau"``, ``converged: False``.

    Example:
        >>> c = ConvergenceDetectorNode(quality_threshold=0.85, improvement_threshold=0.02,
        ...                             max_iterations=10, min_iterations=3)
        >>> c.execute(iteration_history=[{"quality": 0.9}])["reason"]
        'min_iterations'
        >>> out = c.execute(iteration_history=[{"quality": 0.5}, {"quality": 0.7}, {"quality": 0.86}])
        >>> out["should_stop"], out["reason"]
        (True, 'quality_threshold')
    """

    capabilities = frozenset()

    def __init__(self, config: dict[str, Any] | None = None, **params: Any) -> None:
        super().__init__(config, **params)
        self._history: list[dict[str, Any]] = []

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {
            "iteration_history": NodeParameter(type=list, description="[{'quality': float, ...}] one per iteration"),
            "quality": NodeParameter(type=float, description="record one iteration's quality in the node's own history"),
            "quality_threshold": NodeParameter(type=float, default=0.85, description="stop once quality reaches this"),
            "improvement_threshold": NodeParameter(type=float, default=0.02,
                                                   description="stop when improvement falls below this"),
            "max_iterations": NodeParameter(type=int, default=10, minimum=1, description="hard limit on iterations"),
            "min_iterations": NodeParameter(type=int, default=1, minimum=0,
                                            description="never stop (except on a hard limit) before this"),
            "timeout": NodeParameter(type=(int, float), minimum=0, description="hard limit in seconds"),
            "start_time": NodeParameter(type=float, description="epoch seconds when iterating began"),
            "elapsed_seconds": NodeParameter(type=(int, float), description="seconds spent so far"),
            "patience": NodeParameter(type=int, default=1, description="low-improvement iterations tolerated"),
            "reset": NodeParameter(type=bool, default=False, description="clear the node's own history first"),
        }

    def run(self, **kw: Any) -> dict[str, Any]:
        opt = {**self.config, **{k: v for k, v in kw.items() if v is not None}}
        if opt.get("reset"):
            self._history.clear()
        history = opt.get("iteration_history")
        if history is None:
            if opt.get("quality") is not None:
                self._history.append({"quality": float(opt["quality"]), "timestamp": time.time()})
            history = self._history
        if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
            raise NodeConfigurationError(
                f"node {self.label} (ConvergenceDetectorNode): parameter 'iteration_history' expects a list of "
                "dicts with 'quality'", node_id=self.name, parameter="iteration_history",
                expected="list[{'quality': float}]", got=type(history).__name__,
            )
        elapsed = opt.get("elapsed_seconds")
        if elapsed is None:
            elapsed = _elapsed(history, opt.get("start_time"))
        max_it, min_it = int(opt.get("max_iterations", 10)), int(opt.get("min_iterations", 1))
        if min_it > max_it:
            raise NodeConfigurationError(
                f"node {self.label} (ConvergenceDetectorNode): min_iterations ({min_it}) exceeds max_iterations "
                f"({max_it})", node_id=self.name, parameter="min_iterations", expected=f"<= {max_it}", got=min_it,
            )
        return decide(
            history,
            quality_threshold=float(opt.get("quality_threshold", 0.85)),
            improvement_threshold=float(opt.get("improvement_threshold", 0.02)),
            max_iterations=max_it,
            min_iterations=min_it,
            timeout=float(opt["timeout"]) if opt.get("timeout") is not None else None,
            elapsed_seconds=float(elapsed) if elapsed is not None else None,
            patience=max(1, int(opt.get("patience", 1))),
        )
