"""The host side of the code sandbox: profiles, the entry points, and replies turned into errors.

The package docstring (:mod:`kailash.security.sandbox`) describes the layers. This module
is imported lazily through the package, so a worker process, which imports the package
to reach its own modules, never loads the host-side pool.
"""

from __future__ import annotations

import builtins
import hashlib
import logging
import pickle
import sys
import textwrap
import time
from typing import Any

from kailash.errors import NodeConfigurationError, NodeExecutionError, NodeTimeoutError, SecurityError
from kailash.security.audit import audit_event, security_event
from kailash.security.config import SecurityConfig
from kailash.security.sandbox import pool
from kailash.security.sandbox.host import Profile, SandboxUnavailable
from kailash.security.sandbox.wire import WireClosed, WireTimeout
from kailash.security.secrets import plain_secret_values, redact

__all__ = ["run_sandboxed", "release_sandbox", "release_sandbox_later", "shutdown_sandboxes", "prestart_sandbox", "sandbox_info",
           "DEFAULT_ALLOWED_IMPORTS"]

from kailash.security.sandbox.guards import DEFAULT_ALLOWED_IMPORTS  # noqa: E402  (a tuple of names)

logger = logging.getLogger("kailash.security.sandbox")  # the documented logger name
_SIGNALS = {6: "SIGABRT", 9: "SIGKILL", 11: "SIGSEGV", 24: "SIGXCPU", 25: "SIGXFSZ", 7: "SIGBUS", 31: "SIGSYS"}
_profiles: dict[tuple[SecurityConfig, bool], Profile] = {}
_PROFILES_MAX = 256


def _profile(config: SecurityConfig) -> Profile:
    """The worker profile for ``config``; decides (and logs) the isolation actually used."""
    from kailash.security.sandbox import files

    mode = getattr(config, "isolation", "auto")
    usable = mode != "process" and files.bwrap_available()
    cached = _profiles.get((config, usable))
    if cached is not None:
        return cached
    if mode != "process" and not usable:
        _refuse_or_warn_fallback(config)
    if not usable and files.landlock_abi() == 0 and getattr(config, "tenant", None) is None:
        logger.warning("sandbox isolation='process' on a kernel without Landlock: sandboxed code that escaped the "
                       "Python guards could read any file this user can; every file write is refused instead "
                       "(allowed directories included). Install bubblewrap for a real file view.")
    if not usable and files.landlock_abi() == 0 and getattr(config, "tenant", None) is not None:
        raise SecurityError(f"the sandbox policy of tenant '{config.tenant}' needs bubblewrap or Landlock to keep "
                            "sandboxed code inside its file view, and this kernel has neither; it refuses to run "
                            "tenant code in a plain process", parameter="isolation", expected="bwrap or Landlock")
    imports = DEFAULT_ALLOWED_IMPORTS if config.allowed_imports is None else tuple(config.allowed_imports)
    profile = Profile(allowed_imports=tuple(sorted(set(imports))),
                      allowed_directories=tuple(str(d) for d in config.resolved_directories),
                      max_file_size=config.max_file_size, memory_limit=config.memory_limit, bwrap=usable,
                      max_result_size=config.max_result_size)
    if len(_profiles) >= _PROFILES_MAX:
        _profiles.clear()
    _profiles[(config, usable)] = profile
    return profile


def _refuse_or_warn_fallback(config: SecurityConfig) -> None:
    """No working bubblewrap: refuse ``isolation="bwrap"`` and tenant policies, warn for ``"auto"``."""
    from kailash.security.sandbox.files import landlock_abi

    why = ("bubblewrap cannot start here ('bwrap' missing, or no namespaces: a root process without "
           "CAP_SYS_ADMIN, or user namespaces disabled)")
    tenant = getattr(config, "tenant", None)
    if config.isolation == "bwrap" or tenant is not None:
        who = f"the sandbox policy of tenant '{tenant}'" if tenant is not None else "SecurityConfig(isolation='bwrap')"
        audit_event("sandbox_isolation_refused", config=config, requested=config.isolation, tenant=tenant, reason=why)
        raise SecurityError(f"{who} needs a working bubblewrap and refuses to fall back to a plain process: {why}; "
                            "install it with 'apt-get install -y bubblewrap' and allow user namespaces (or run "
                            "the host as root)", parameter="isolation", expected="a working bwrap")
    landlock = landlock_abi()
    logger.warning("sandbox isolation='auto' falls back to a plain process: %s. Sandboxed code is then confined "
                   "by %s, seccomp, rlimits and the Python guards only (see docs/security.md, 'Isolation modes').",
                   why, f"Landlock (ABI {landlock})" if landlock else "NO file-system confinement (no Landlock)")
    audit_event("sandbox_isolation_fallback", config=config, requested="auto", used="process", landlock=landlock,
                reason=why)


def prestart_sandbox(config: SecurityConfig) -> dict[str, Any]:
    """Start the template for ``config`` now (the first sandboxed call then skips ~0.1 s)."""
    return sandbox_info(config)


def sandbox_info(config: SecurityConfig) -> dict[str, Any]:
    """How code runs under ``config`` on this machine: isolation layers in effect.

    Example:
        >>> info = sandbox_info(SecurityConfig(execution_timeout=5.0))
        >>> info["isolation"] in ("bwrap", "process") and info["seccomp"] in (True, False)
        True
    """
    profile = _profile(config)
    worker = pool.template_for(profile).fork()
    try:
        hello = dict(worker.hello)
    finally:
        worker.close()
    from kailash.security.sandbox.files import namespaces_available

    return {"isolation": "bwrap" if profile.bwrap else "process", "seccomp": bool(hello.get("seccomp")),
            "namespaces": profile.bwrap or namespaces_available(),
            "landlock": int(hello.get("landlock") or 0), "read_only_files": bool(hello.get("read_only_files")),
            "capabilities_dropped": bool(hello.get("capabilities_dropped")),
            "address_space_limit": hello.get("address_space_limit"), "allowed_imports": list(profile.allowed_imports),
            "allowed_directories": list(profile.allowed_directories), "workers_per_policy": pool.workers_per_policy()}


def release_sandbox_later(node_key: str) -> None:
    """Queue ``node_key``'s state for release. Safe from a GC finalizer: it takes no lock."""
    pool.release_later(node_key)


def release_sandbox(node_key: str) -> None:
    """Discard the ``self`` state of ``node_key`` (its worker is stopped if it hosts no other node)."""
    pool.release(node_key)


def shutdown_sandboxes() -> None:
    """Stop every template and worker of this process (also runs at exit)."""
    pool.shutdown()


def run_sandboxed(node_key: str, code: str, imports: list[str] | tuple[str, ...] | None, inputs: dict[str, Any],
                  config: SecurityConfig, node_id: str | None = None) -> Any:
    """Run ``code`` (a PythonCodeNode body) in the sandbox; returns the value of ``result``.

    Args:
        node_key: identifies the node instance; its ``self`` state lives in its worker.
        code: the code; its inputs are variables, ``result`` (or a top-level ``return``) its output.
        imports: modules pre-imported into the code's globals (each must be allowed).
        inputs: the input values (they cross the process boundary by pickling).
        config: the policy (timeout, memory, directories, allowed imports, audit).
        node_id: the node's id, used in error messages and audit events.

    Raises:
        SecurityError: the code broke a sandbox rule or a resource limit stopped it.
        NodeTimeoutError: it ran past ``execution_timeout`` (the worker was replaced).
        NodeConfigurationError: the code does not compile.
        NodeExecutionError: the code raised, the worker crashed, or the result is not plain data.

    Example:
        >>> cfg = SecurityConfig(execution_timeout=5.0)
        >>> run_sandboxed("doc-example", "result = sum(range(n))", [], {"n": 10}, cfg, "compute")
        45
    """
    pool.release_queued()
    label = f"node '{node_id}' (PythonCodeNode)" if node_id else "PythonCodeNode"
    profile = _profile(config)
    request = {"op": "run", "node_key": node_key, "code": code, "imports": list(imports or ()),
               "inputs": inputs, "timeout": config.execution_timeout}
    try:
        payload = pickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        bad = next((k for k, v in inputs.items() if not _picklable(v)), "?")
        raise NodeExecutionError(
            f"{label}: input '{bad}' ({type(inputs.get(bad)).__name__}) cannot be sent to the sandbox: {exc}; "
            "sandboxed code receives copies of its inputs, so they must be picklable",
            node_id=node_id, parameter=bad, expected="a picklable value") from exc
    secrets = plain_secret_values(*inputs.values())
    timeout = config.execution_timeout
    slot = pool.lease(profile, node_key)
    with slot.lock:
        try:
            worker = pool.ready_worker(profile, slot)
        except SandboxUnavailable as exc:
            raise SecurityError(f"{label}: {exc}", node_id=node_id) from exc
        started = time.monotonic()
        try:
            reply = worker.call(payload, timeout)
        except WireTimeout:
            pool.forget(slot, worker)
            _audit(config, "sandbox_timeout", node_id, code, timeout=timeout)
            raise NodeTimeoutError(
                f"{label} exceeded its execution_timeout of {timeout}s and was stopped after "
                f"{time.monotonic() - started:.2f}s (its sandbox worker was replaced; the node's state was reset, "
                "as was the state of the other nodes that worker hosted)",
                node_id=node_id, parameter="execution_timeout", expected=f"<= {timeout}s") from None
        except WireClosed:
            pool.forget(slot, worker)
            raise _crash_error(label, node_id, worker.exit_code, config, code) from None
    return _outcome(reply, label, node_id, code, config, secrets)


def run_unguarded_for_tests(config: SecurityConfig, code: str, *, landlock: bool = True) -> Any:
    """TEST ONLY: run ``code`` with real builtins and no Python guard in a worker under
    ``config``'s OS layer (namespaces, file view, Landlock, rlimits, seccomp), to prove
    that layer holds on its own (``landlock=False``: as on a kernel without Landlock).
    Returns ``result`` or ``{"raised": "..."}``."""
    import dataclasses

    profile = dataclasses.replace(_profile(config), raw_for_tests=True, landlock=landlock)
    worker = pool.template_for(profile).fork()
    try:
        reply = worker.call(pickle.dumps({"code": code}), config.execution_timeout)
    finally:
        worker.close()
    return reply.get("result")


def _picklable(value: Any) -> bool:
    try:
        pickle.dumps(value)
        return True
    except Exception:
        return False


def _source_line(code: str, line: int) -> str:
    lines = textwrap.dedent(code).splitlines()
    return lines[line - 1].strip() if 0 < line <= len(lines) else ""


def _quote(code: str, line: int) -> str:
    text = _source_line(code, line) if line else ""
    return f"\n    {line} | {text}" if text else ""


def _where(code: str, line: int) -> str:
    if not line:
        return ""
    text = _source_line(code, line)
    return f" at line {line}" + (f" ({text})" if text else "")


def _outcome(reply: dict[str, Any], label: str, node_id: str | None, code: str, config: SecurityConfig,
             secrets: frozenset[str]) -> Any:
    status = reply.get("status")
    stdout = reply.get("stdout")
    if stdout:
        sys.stdout.write(redact(stdout, secrets) if secrets else stdout)
    if status == "ok":
        return reply.get("result")
    message = redact(str(reply.get("message", "")), secrets) if secrets else str(reply.get("message", ""))
    line = int(reply.get("line") or 0)
    if status == "rejected":
        problems = [(int(ln), str(msg)) for ln, msg in reply.get("problems", [])]
        listing = "; ".join(f"line {ln}: {msg}" + (f" ({_source_line(code, ln)})" if ln else "") for ln, msg in problems)
        if reply.get("syntax"):
            ln, msg = problems[0] if problems else (0, "SyntaxError")
            msg = msg.removeprefix("SyntaxError: ")
            raise NodeConfigurationError(f"{label}: syntax error in code at line {ln}: {msg}{_quote(code, ln)}",
                                         node_id=node_id, parameter="code", expected="valid Python")
        _audit(config, "sandbox_code_rejected", node_id, code, problems=[m for _, m in problems])
        raise SecurityError(f"{label}: sandbox refused the code: {listing}", node_id=node_id, parameter="code")
    if status == "violation":
        _audit(config, "sandbox_violation", node_id, code, reason=message, line=line)
        raise SecurityError(f"{label}: sandbox violation{_where(code, line)}: {message}", node_id=node_id)
    if status == "memory":
        _audit(config, "sandbox_memory_limit", node_id, code, line=line)
        raise SecurityError(f"{label} exceeded its memory_limit of {config.memory_limit} bytes{_where(code, line)} "
                            f"and was stopped ({message or 'MemoryError'})", node_id=node_id,
                            parameter="memory_limit", expected=f"<= {config.memory_limit} bytes")
    if status == "unset":
        raise NodeExecutionError(f"{label}: the code did not set `result` (assign `result = ...` or `return value`)",
                                 node_id=node_id, parameter="code", expected="the code to set `result`")
    if status == "unsendable":
        raise NodeExecutionError(f"{label}: {message}", node_id=node_id, parameter="result", expected="plain data")
    if status == "error":
        etype = str(reply.get("type", "Exception"))
        cause = _stand_in(etype, message, bool(reply.get("builtin")))
        where = f" at line {line} of its code" if line else ""
        err = NodeExecutionError(f"{label} failed{where}: {etype}: {message}{_quote(code, line)}", node_id=node_id,
                                 parameter="code")
        err.line = line  # type: ignore[attr-defined]
        err.exception_type = etype  # type: ignore[attr-defined]
        raise err from cause
    raise NodeExecutionError(f"{label}: unexpected reply from the sandbox worker ({status!r})", node_id=node_id)


def _stand_in(etype: str, message: str, builtin: bool) -> BaseException:
    """The user's exception, rebuilt on this side when it is a builtin type (for ``__cause__``)."""
    cls = getattr(builtins, etype, None) if builtin else None
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            return cls(message)
        except Exception:
            pass
    return RuntimeError(f"{etype}: {message}")


def _crash_error(label: str, node_id: str | None, exit_code: int | None, config: SecurityConfig,
                 code: str) -> Exception:
    if exit_code is not None and exit_code < 0:
        how = f"killed by {_SIGNALS.get(-exit_code, f'signal {-exit_code}')}"
    elif exit_code is not None:
        how = f"exited with status {exit_code}"
    else:
        how = "lost"
    if exit_code == -24:
        _audit(config, "sandbox_timeout", node_id, code, reason="cpu limit")
        return NodeTimeoutError(f"{label} used more CPU time than its execution_timeout of {config.execution_timeout}s "
                                "allows and was stopped", node_id=node_id, parameter="execution_timeout")
    _audit(config, "sandbox_worker_crashed", node_id, code, exit_code=exit_code)
    hint = ""
    if exit_code in (-6, -11, -7) and config.memory_limit:
        hint = f"; the most likely cause is exhausting the memory_limit of {config.memory_limit} bytes"
    return NodeExecutionError(f"{label}: its sandbox worker was {how}{hint}; the node's state was reset and the "
                              "host process is unaffected", node_id=node_id)


def _audit(config: SecurityConfig, event: str, node_id: str | None, code: str, **fields: Any) -> None:
    digest = hashlib.sha256(code.encode("utf-8", "replace")).hexdigest()[:16]
    security_event(event, config=config, node_id=node_id, code_sha256=digest, **fields)

