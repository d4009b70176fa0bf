"""Security: policies, safe file access, secrets, audit events and the code sandbox."""

from __future__ import annotations

from kailash.errors import SecurityError
from kailash.security.config import (
    SecurityConfig,
    get_security_config,
    reset_security_config,
    security_context,
    set_security_config,
)
from kailash.security.paths import safe_open, validate_path
from kailash.security.secrets import Secret, redact, reveal, secret_from_env

__all__ = [
    "SecurityConfig",
    "SecurityError",
    "Secret",
    "get_security_config",
    "redact",
    "reset_security_config",
    "reveal",
    "safe_open",
    "secret_from_env",
    "security_context",
    "set_security_config",
    "validate_path",
]
