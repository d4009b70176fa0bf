"""Structured security audit events (JSON lines on the ``kailash.audit`` logger).

One event is one JSON object on one line: ``ts``, ``event``, ``level`` and the event's
fields (``node_id``, ``path``, ``reason``...). Events go to the ``kailash.audit``
logger and, when the policy names an ``audit_log_path``, are appended to that file.
Secret values never appear: :class:`~kailash.security.secrets.Secret` objects are
replaced by their reference, and any string containing the value of a Secret of the
event itself or of the current run (and any URL password) is redacted. A Secret
rebuilt from sandboxed code never scrubs other text. Event names used by the SDK:

* ``file_access_refused``, ``file_too_large`` (:mod:`kailash.security.paths`)
* ``sandbox_violation``, ``sandbox_code_rejected``, ``sandbox_timeout``,
  ``sandbox_memory_limit``, ``sandbox_worker_crashed`` (the code sandbox)
* ``auth_failure`` (authentication nodes and middleware)
* ``node_security_event``, ``input_rejected`` (:class:`~kailash.nodes.mixins.SecurityMixin`)
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import Any

from kailash.security.secrets import known_secret_values, plain_secret_values, redact

__all__ = ["audit_event", "audit_logger", "security_event", "audit_enabled"]

audit_logger = logging.getLogger("kailash.audit")
_file_lock = threading.Lock()


def audit_event(event: str, *, config: Any = None, level: str = "WARNING", **fields: Any) -> dict[str, Any]:
    """Emit one audit record; returns it. Secret values are redacted before writing.

    Example:
        >>> from kailash.security.secrets import Secret
        >>> audit_event("auth_failure", node_id="auth", key=Secret("s3cr3t-value"))["key"]
        '***'
    """
    known = known_secret_values() | plain_secret_values(fields)  # the run's secrets and the event's own
    record = {"ts": time.time(), "event": event, "level": level.upper(), "pid": os.getpid(),
              **redact(fields, known)}
    line = json.dumps(record, default=lambda o: redact(str(o), known), sort_keys=True)
    audit_logger.log(getattr(logging, level.upper(), logging.WARNING), line)
    path = getattr(config, "audit_log_path", None) if config is not None else None
    if path:
        with _file_lock, open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
    return record


def audit_enabled(config: Any = None) -> Any:
    """The policy that wants audit events (``config`` or the global one), or ``None``."""
    if config is None:
        from kailash.security.config import get_security_config

        config = get_security_config()
    return config if config is not None and getattr(config, "enable_audit_logging", False) else None


def security_event(event: str, *, config: Any = None, level: str = "WARNING", **fields: Any) -> dict[str, Any] | None:
    """Emit an audit record only when audit logging is enabled; returns it (or ``None``).

    Use this from nodes and middleware: ``config`` defaults to the global policy.
    """
    policy = audit_enabled(config)
    if policy is None:
        return None
    return audit_event(event, config=policy, level=level, **fields)
