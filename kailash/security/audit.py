"""Structured security audit events (JSON lines on the ``kailash.audit`` logger)."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from kailash.security.secrets import redact

__all__ = ["audit_event", "audit_logger"]

audit_logger = logging.getLogger("kailash.audit")


def audit_event(event: str, *, config: Any = None, level: str = "WARNING", **fields: Any) -> dict[str, Any]:
    """Emit one audit record; returns it. Secret values are redacted before writing."""
    record = {"ts": time.time(), "event": event, "level": level.upper(), **redact(fields)}
    line = json.dumps(record, default=str, sort_keys=True)
    audit_logger.log(getattr(logging, level.upper(), logging.WARNING), line)
    path = getattr(config, "audit_log_path", None) if config is not None else None
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
    return record
