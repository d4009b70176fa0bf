"""SecurityConfig and the process-wide active policy.

Holds the limits every file-touching node and the code sandbox obey. It stores
values only; enforcement lives in :mod:`kailash.security.paths` (files) and the
sandbox module (code).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from kailash.errors import SecurityError

__all__ = ["SecurityConfig", "set_security_config", "get_security_config", "reset_security_config", "security_context",
           "tenant_policy"]


@dataclass(frozen=True, kw_only=True)
class SecurityConfig:
    """A security policy.

    Attributes:
        allowed_directories: files may only be read or written below these directories
            (resolved, symlinks included). Empty means no directory restriction.
        max_file_size: the largest file (bytes) a node may read.
        execution_timeout: wall-clock seconds a sandboxed code node may run.
        memory_limit: address-space bytes a sandbox worker may use on top of its
            interpreter (a worker hosts several code nodes of one policy, whose ``self``
            states share it).
        enable_audit_logging: write structured security events to the audit log.
        allowed_imports: modules sandboxed code may import (``None`` = the default list).
        sandbox: run PythonCodeNode code isolated from the host process.
        audit_log_path: also append audit events (JSON lines) to this file.
        isolation: how sandbox workers are isolated from the operating system (see
            docs/security.md, "Isolation modes"): ``"bwrap"`` requires bubblewrap (a file
            view holding only the interpreter, its libraries and the allowed directories;
            own PID, network and IPC namespaces) and refuses to run without it;
            ``"process"`` uses a plain child process confined by Landlock, seccomp and
            rlimits; ``"auto"`` uses bubblewrap when it works here and otherwise falls
            back to ``"process"`` with a WARNING log record and a
            ``sandbox_isolation_fallback`` audit event (never for a tenant policy).
        tenant: the tenant whose runs this policy governs (set by the gateway, see
            :func:`tenant_policy`). A tenant policy never falls back to weaker isolation:
            ``isolation="auto"`` without a working bubblewrap is refused (fail closed).
        max_result_size: the largest result (bytes, as encoded for the trip back to the
            host, counting shared references every time they appear) sandboxed code may
            return; larger results fail the node with an error naming it. 16 MiB by default.

    Example:
        >>> import tempfile
        >>> cfg = SecurityConfig(allowed_directories=[tempfile.gettempdir()], execution_timeout=5.0)
        >>> cfg.execution_timeout
        5.0
        >>> SecurityConfig(memory_limit=-1)
        Traceback (most recent call last):
        ...
        kailash.errors.SecurityError: invalid SecurityConfig: memory_limit must be a positive number of bytes, got -1
    """

    allowed_directories: tuple[str, ...] | list[str] = ()
    max_file_size: int = 100 * 1024 * 1024
    execution_timeout: float = 300.0
    memory_limit: int = 512 * 1024 * 1024
    enable_audit_logging: bool = False
    allowed_imports: tuple[str, ...] | list[str] | None = None
    sandbox: bool = True
    audit_log_path: str | None = None
    isolation: str = "auto"
    tenant: str | None = None
    max_result_size: int = 16 * 1024 * 1024
    _resolved: tuple[Path, ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        problems = []
        if self.max_file_size is not None and self.max_file_size <= 0:
            problems.append(f"max_file_size must be a positive number of bytes, got {self.max_file_size}")
        if self.execution_timeout is not None and self.execution_timeout <= 0:
            problems.append(f"execution_timeout must be positive seconds, got {self.execution_timeout}")
        if self.memory_limit is not None and self.memory_limit <= 0:
            problems.append(f"memory_limit must be a positive number of bytes, got {self.memory_limit}")
        if type(self.max_result_size) is not int or self.max_result_size <= 0:
            problems.append(f"max_result_size must be a positive number of bytes, got {self.max_result_size!r}")
        if self.isolation not in ("auto", "bwrap", "process"):
            problems.append(f"isolation must be 'auto', 'bwrap' or 'process', got {self.isolation!r}")
        if self.tenant is not None and (type(self.tenant) is not str or not self.tenant):
            problems.append(f"tenant must be a non-empty string or None, got {self.tenant!r}")
        if isinstance(self.allowed_directories, str):
            problems.append("allowed_directories must be a list of directories, not a single string")
        if problems:
            raise SecurityError("invalid SecurityConfig: " + "; ".join(problems), parameter="SecurityConfig")
        dirs = tuple(str(d) for d in self.allowed_directories)
        object.__setattr__(self, "allowed_directories", dirs)
        if self.allowed_imports is not None:
            object.__setattr__(self, "allowed_imports", tuple(self.allowed_imports))
        resolved = []
        for d in dirs:
            p = Path(os.path.expanduser(d))
            if not p.exists():
                raise SecurityError(
                    f"invalid SecurityConfig: allowed directory '{d}' does not exist",
                    parameter="allowed_directories",
                    expected="an existing directory",
                    got=d,
                )
            elif not p.is_dir():
                raise SecurityError(
                    f"invalid SecurityConfig: allowed directory '{d}' is not a directory",
                    parameter="allowed_directories",
                    expected="a directory",
                    got=d,
                )
            resolved.append(p.resolve())
        object.__setattr__(self, "_resolved", tuple(resolved))

    @property
    def resolved_directories(self) -> tuple[Path, ...]:
        return self._resolved


_lock = threading.Lock()
_active: SecurityConfig | None = None
_scoped: contextvars.ContextVar[SecurityConfig | None] = contextvars.ContextVar("kailash_security", default=None)


def set_security_config(config: SecurityConfig | None) -> None:
    """Make ``config`` the process-wide policy (``None`` removes it)."""
    global _active
    if config is not None and not isinstance(config, SecurityConfig):
        raise SecurityError(
            f"set_security_config expects a SecurityConfig, got {type(config).__name__}",
            parameter="config", expected="SecurityConfig", got=type(config).__name__,
        )
    with _lock:
        _active = config


def get_security_config() -> SecurityConfig | None:
    """The policy in force here: a :func:`security_context` one if inside it, else the
    process-wide policy, else ``None``."""
    scoped = _scoped.get()
    return scoped if scoped is not None else _active


@contextlib.contextmanager
def security_context(config: SecurityConfig) -> Iterator[SecurityConfig]:
    """Apply ``config`` to code running in this context only (this thread or task).

    The gateway runs each tenant's workflows inside one, so a tenant's code nodes are
    sandboxed and its file nodes confined to its own directory, whatever the process-wide
    policy is.

    Example:
        >>> import tempfile
        >>> cfg = SecurityConfig(allowed_directories=[tempfile.mkdtemp()])
        >>> with security_context(cfg):
        ...     get_security_config() is cfg
        True
    """
    if not isinstance(config, SecurityConfig):
        raise SecurityError(f"security_context expects a SecurityConfig, got {type(config).__name__}",
                            parameter="config", expected="SecurityConfig", got=type(config).__name__)
    token = _scoped.set(config)
    try:
        yield config
    finally:
        _scoped.reset(token)


def tenant_policy(operator: SecurityConfig | None, *, tenant: str, allowed_directories: list[str] | tuple[str, ...],
                  **overrides: object) -> SecurityConfig:
    """The policy for one tenant's runs, derived from the operator's policy.

    Keeps the operator's isolation and limits (``overrides``, such as per-tenant
    ``memory_limit`` or ``execution_timeout``, replace them), confines files to
    ``allowed_directories``, always sandboxes code, and marks the policy as a tenant's,
    so the sandbox refuses to fall back to weaker isolation for it.

    Example:
        >>> import tempfile
        >>> base = SecurityConfig(isolation="bwrap", execution_timeout=10.0)
        >>> p = tenant_policy(base, tenant="acme", allowed_directories=[tempfile.gettempdir()])
        >>> (p.isolation, p.execution_timeout, p.tenant, p.sandbox)
        ('bwrap', 10.0, 'acme', True)
    """
    if type(tenant) is not str or not tenant:
        raise SecurityError("tenant_policy needs the tenant's id", parameter="tenant", expected="a non-empty string")
    settings: dict[str, object] = {}
    if operator is not None:
        settings = {"max_file_size": operator.max_file_size, "execution_timeout": operator.execution_timeout,
                    "memory_limit": operator.memory_limit, "enable_audit_logging": operator.enable_audit_logging,
                    "allowed_imports": operator.allowed_imports, "audit_log_path": operator.audit_log_path,
                    "isolation": operator.isolation}
    settings.update(overrides)
    settings.update(allowed_directories=tuple(str(d) for d in allowed_directories), sandbox=True, tenant=tenant)
    return SecurityConfig(**settings)  # type: ignore[arg-type]


def reset_security_config() -> None:
    set_security_config(None)
