"""The gateway's route installers, one module per resource, installed in a fixed order.

==========================================  =============================================
:mod:`kailash.api.catalog_routes`           ``/health``, ``/nodes``, ``/nodes/{type}``
:mod:`kailash.api.studio_routes`            ``/studio``, ``/studio/static/...``
:mod:`kailash.api.workflow_routes`          ``/workflows`` (list, upload, describe, delete, export)
:mod:`kailash.api.validation_routes`        ``/validate``
:mod:`kailash.api.run_routes`               ``/workflows/{name}/execute``, ``/runs``, ``/runs/{id}``
:mod:`kailash.api.resume_routes`            ``/runs/{id}/resume`` (re-run from the failed node)
:mod:`kailash.api.event_routes`             ``/runs/{id}/events`` (SSE), ``/ws/runs/{id}``
:mod:`kailash.api.schedule_routes`          ``/schedules``, ``/schedules/{id}``, ``/schedules/{id}/fires``
:mod:`kailash.api.metrics`                  ``/metrics`` (Prometheus text format)
==========================================  =============================================

Each installer is ``install(app, gateway)`` and uses the gateway's public methods only.
Errors are answered by :mod:`kailash.api.failures`, installed by :mod:`kailash.api.app`.
"""

from __future__ import annotations

from typing import Any

from kailash.api.studio_routes import STUDIO_DIR

__all__ = ["install", "INSTALLERS", "STUDIO_DIR"]

INSTALLERS = ("catalog_routes", "studio_routes", "workflow_routes", "validation_routes", "run_routes", "resume_routes",
              "event_routes", "schedule_routes", "metrics")


def install(app: Any, gw: Any) -> None:
    """Add every resource's routes to ``app``, in the order of :data:`INSTALLERS`."""
    from kailash.api import (
        catalog_routes,
        event_routes,
        metrics,
        resume_routes,
        run_routes,
        schedule_routes,
        studio_routes,
        validation_routes,
        workflow_routes,
    )

    modules = {"catalog_routes": catalog_routes, "studio_routes": studio_routes, "workflow_routes": workflow_routes,
               "validation_routes": validation_routes, "run_routes": run_routes, "resume_routes": resume_routes,
               "event_routes": event_routes,
               "schedule_routes": schedule_routes, "metrics": metrics}
    for name in INSTALLERS:
        modules[name].install(app, gw)
