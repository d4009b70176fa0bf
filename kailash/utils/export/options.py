"""Export options: what ``config=`` of :class:`~kailash.utils.export.WorkflowExporter` accepts.

One table (:data:`CONFIG_KEYS`) names every option; :func:`check_config` gathers every
problem with a config (unknown keys with close matches, wrong types, values Kubernetes
would refuse) and raises once. Nothing here writes or exports.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from pathlib import Path
from typing import Any

from kailash.errors import SerializationError
from kailash.utils.export.kubernetes import QUANTITY

__all__ = ["CONFIG_KEYS", "check_config"]

#: Export options (``config=``) and what they do.
CONFIG_KEYS: dict[str, str] = {
    "version": "the workflow version written to the file (default: the workflow's)",
    "metadata": "a mapping merged into the workflow's metadata (author, description, ...)",
    "include_dependencies": "write the Kailash extras and Python packages the nodes need",
    "format": "'yaml' (default) or 'json': the workflow file inside Docker/Kubernetes exports",
    "parameters": "default run parameters {node_id: {param: value}} baked into the image/ConfigMap",
    "serve": "Kubernetes: a Deployment + Service running `kailash serve` (default False)",
    "job": "Kubernetes: also write the one-off Job (default: when not serving)",
    "image": "Kubernetes: the image the pods run (default NAME:VERSION, built from to_docker)",
    "image_pull_policy": "Kubernetes: IfNotPresent (default), Always or Never",
    "namespace": "Kubernetes: the namespace of every object",
    "replicas": "Kubernetes: Deployment replicas (default 1; more than 1 needs database_url_secret)",
    "database_url_secret": "Kubernetes: the Secret whose key KAILASH_DATABASE_URL names the PostgreSQL database "
    "the gateway replicas share (runs, queue); required for replicas > 1",
    "on_interrupted": "Kubernetes: 'resume' (default) or 'mark' a queued run whose gateway pod died",
    "queue_lease": "Kubernetes: seconds before another replica takes over a run of a pod that died (default 30)",
    "dask_workers": "Kubernetes: also a Dask scheduler (Deployment + Service NAME-dask-scheduler:8786) and this many "
    "Dask worker pods on the same image (Docker: the image gets the dask extra); the workflow pods get "
    "KAILASH_DASK_ADDRESS for DaskRuntime(address=...)",
    "port": "the HTTP port `kailash serve` listens on (default 8000)",
    "service_port": "Kubernetes: the Service port (default 80)",
    "service_type": "Kubernetes: ClusterIP (default), NodePort or LoadBalancer",
    "resources": "Kubernetes: {'requests': {...}, 'limits': {...}} (default 100m/256Mi, 1 CPU/1Gi)",
    "secret_name": "Kubernetes: the Secret holding the ${ENV} values (default NAME-secrets)",
    "backoff_limit": "Kubernetes: Job retries (default 0)",
    "ttl_seconds_after_finished": "Kubernetes: how long a finished Job is kept (default 86400)",
    "active_deadline_seconds": "Kubernetes: the Job's time limit",
    "base_image": "Docker: the base image (default python:3.11-slim)",
    "sdk": "Docker: a kailash wheel or source checkout to bundle (default: a wheel of the running SDK), or a requirement to install from the index",
    "packages": "Docker: further pip requirements",
}
_TYPES: dict[str, Any] = {
    "version": (str, int, float),
    "metadata": dict,
    "include_dependencies": bool,
    "format": str,
    "parameters": dict,
    "serve": bool,
    "job": bool,
    "image": str,
    "image_pull_policy": str,
    "namespace": str,
    "replicas": int,
    "database_url_secret": str,
    "on_interrupted": str,
    "queue_lease": (int, float),
    "dask_workers": int,
    "port": int,
    "service_port": int,
    "service_type": str,
    "resources": dict,
    "secret_name": str,
    "backoff_limit": int,
    "ttl_seconds_after_finished": int,
    "active_deadline_seconds": int,
    "base_image": str,
    "sdk": str,
    "packages": list,
}
_CHOICES = {
    "format": ("yaml", "json"),
    "service_type": ("ClusterIP", "NodePort", "LoadBalancer"),
    "image_pull_policy": ("IfNotPresent", "Always", "Never"),
    "on_interrupted": ("resume", "mark"),
}


def check_config(cfg: dict[str, Any]) -> dict[str, Any]:
    problems = []
    for key, value in cfg.items():
        if key not in CONFIG_KEYS:
            close = difflib.get_close_matches(key, list(CONFIG_KEYS), n=2)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            problems.append(f"unknown export option '{key}' (known: {', '.join(sorted(CONFIG_KEYS))}){hint}")
            continue
        if value is None:
            continue
        tp = _TYPES[key]
        if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
            names = " | ".join(t.__name__ for t in (tp if isinstance(tp, tuple) else (tp,)))
            problems.append(f"export option '{key}' expects {names}, got {type(value).__name__}")
        elif key in _CHOICES and value not in _CHOICES[key]:
            problems.append(f"export option '{key}' must be one of {', '.join(_CHOICES[key])}, got {value!r}")
        elif key in ("replicas", "backoff_limit", "dask_workers") and value < 0:
            problems.append(f"export option '{key}' must be >= 0, got {value}")
        elif key in ("port", "service_port") and not 0 < value < 65536:
            problems.append(f"export option '{key}' must be a port number 1..65535, got {value}")
        elif key == "namespace" and not re.match(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", value):
            problems.append(f"export option 'namespace' {value!r} is not a valid Kubernetes namespace")
        elif key == "parameters" and not _is_json(value):
            problems.append(
                "export option 'parameters' must be plain JSON data (it is written to params.json); "
                "pass objects and secrets at run time instead"
            )
        elif key == "resources":
            problems.extend(_resource_problems(value))
        elif key == "sdk" and value.endswith(".whl") and not Path(value).is_file():
            problems.append(f"export option 'sdk': wheel '{value}' does not exist")
        elif key == "version" and isinstance(value, float) and not math.isfinite(value):
            problems.append("export option 'version' must be a version string")
        elif key == "queue_lease" and not (math.isfinite(value) and value > 0):
            problems.append(f"export option 'queue_lease' must be a positive number of seconds, got {value}")
        elif key == "database_url_secret" and not re.match(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", value):
            problems.append(f"export option 'database_url_secret' {value!r} is not a valid Kubernetes Secret name")
    replicas = cfg.get("replicas")
    if isinstance(replicas, int) and replicas > 1 and cfg.get("serve") and not cfg.get("database_url_secret"):
        problems.append(
            f"export option 'replicas' is {replicas}, but gateway replicas must share one PostgreSQL database "
            "(each pod's default SQLite store is its own: runs queued on one pod would be invisible to the others "
            "and lost with it); set 'database_url_secret' (--database-url-secret NAME) to a Secret holding "
            "KAILASH_DATABASE_URL, or use replicas: 1")
    if problems:
        raise SerializationError("invalid export config:\n  - " + "\n  - ".join(problems), parameter="config")
    return cfg


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def _resource_problems(value: dict[str, Any]) -> list[str]:
    out = []
    for section, spec in value.items():
        if section not in ("requests", "limits"):
            out.append(f"export option 'resources': unknown section '{section}' (use 'requests' and 'limits')")
        elif not isinstance(spec, dict):
            out.append(f"export option 'resources.{section}' must be a mapping like {{'cpu': '500m', 'memory': '1Gi'}}")
        else:
            for res, q in spec.items():
                if not isinstance(q, (str, int)) or isinstance(q, bool) or not QUANTITY.match(str(q)):
                    out.append(
                        f"export option 'resources.{section}.{res}': {q!r} is not a Kubernetes quantity "
                        "(e.g. '500m', '2', '512Mi')"
                    )
    return out
