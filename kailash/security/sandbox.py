"""The code sandbox: run PythonCodeNode code outside the host process.

:func:`run_sandboxed` is the one entry point. Under a :class:`SecurityConfig` the
code runs in a *worker* process forked from a pre-started template (one template per
policy, inside bubblewrap when available), one worker per node instance so the node's
``self`` state persists between executions. The layers, outermost first:

1. OS isolation (bubblewrap): no network, own PID/IPC/UTS namespaces, read-only file
   system with ``/tmp``, ``/home``, ``/root`` and ``/run`` hidden, the allowed
   directories mounted read-write. Without a working ``bwrap`` (``isolation="auto"``
   falls back, ``"bwrap"`` refuses to run) the worker is a plain child process.
2. Kernel limits: ``RLIMIT_AS`` (``memory_limit`` on top of the interpreter),
   ``RLIMIT_CPU``, ``RLIMIT_FSIZE`` (``max_file_size``), no core dumps, and a seccomp
   filter refusing fork/exec, sockets, signals to other processes and raising limits.
3. A wall-clock ``execution_timeout`` enforced by the host, which kills the worker
   (the node's state is then reset) and replaces it at the next call.
4. Python guards: static checks (:mod:`~kailash.security.sandbox_policy`), restricted
   builtins and module snapshots plus an audit hook (:mod:`~kailash.security.sandbox_guards`).

Only plain data crosses back (:mod:`~kailash.security.sandbox_wire`). The host survives
every failure of a worker: it sees a closed socket or a timeout, never shared state.
"""

from __future__ import annotations

import atexit
import builtins
import hashlib
import os
import pickle
import sys
import textwrap
import threading
import time
from collections import OrderedDict
from typing import Any

from kailash.errors import NodeConfigurationError, NodeExecutionError, NodeTimeoutError, SecurityError
from kailash.security.audit import security_event
from kailash.security.config import SecurityConfig
from kailash.security.sandbox_host import Profile, SandboxUnavailable, Template, Worker
from kailash.security.sandbox_wire import WireClosed, WireTimeout
from kailash.security.secrets import plain_secret_values, redact

__all__ = ["run_sandboxed", "release_sandbox", "release_sandbox_later", "shutdown_sandboxes", "prestart_sandbox", "sandbox_info",
           "DEFAULT_ALLOWED_IMPORTS"]

from kailash.security.sandbox_guards import DEFAULT_ALLOWED_IMPORTS  # noqa: E402  (a tuple of names)

_MAX_WORKERS = 32
_lock = threading.Lock()
_MAX_TEMPLATES = 8
_templates: OrderedDict[Profile, Template] = OrderedDict()
_template_locks: dict[Profile, threading.Lock] = {}
_workers: OrderedDict[tuple[Profile, str], Worker] = OrderedDict()
_SIGNALS = {6: "SIGABRT", 9: "SIGKILL", 11: "SIGSEGV", 24: "SIGXCPU", 25: "SIGXFSZ", 7: "SIGBUS", 31: "SIGSYS"}


def _profile(config: SecurityConfig) -> Profile:
    from kailash.security.sandbox_os import bwrap_available

    mode = getattr(config, "isolation", "auto")
    use_bwrap = mode != "process" and bwrap_available()
    if mode == "bwrap" and not use_bwrap:
        raise SecurityError("SecurityConfig(isolation='bwrap') needs a working bubblewrap ('bwrap' on PATH, "
                            "user namespaces allowed); install it with 'apt-get install -y bubblewrap'",
                            parameter="isolation", expected="a working bwrap")
    imports = DEFAULT_ALLOWED_IMPORTS if config.allowed_imports is None else tuple(config.allowed_imports)
    return Profile(allowed_imports=tuple(sorted(set(imports))),
                   allowed_directories=tuple(str(d) for d in config.resolved_directories),
                   max_file_size=config.max_file_size, memory_limit=config.memory_limit, bwrap=use_bwrap,
                   max_result_size=config.max_result_size)


def _template(profile: Profile) -> Template:
    with _lock:
        tpl = _templates.get(profile)
        if tpl is not None and tpl.alive:
            _templates.move_to_end(profile)
            return tpl
        plock = _template_locks.setdefault(profile, threading.Lock())
    with plock:
        with _lock:
            tpl = _templates.get(profile)
            if tpl is not None and tpl.alive:
                return tpl
        tpl = Template(profile)
        retired: list[tuple[Template, list[Worker]]] = []
        with _lock:
            _templates[profile] = tpl
            while len(_templates) > _MAX_TEMPLATES:  # policies not used lately (e.g. per-test directories)
                old_profile, old = _templates.popitem(last=False)
                _template_locks.pop(old_profile, None)
                gone = [k for k in _workers if k[0] == old_profile]
                retired.append((old, [_workers.pop(k) for k in gone]))
        for old, workers in retired:
            for w in workers:
                w.dead = True
            old.close()
        return tpl


def _worker(profile: Profile, node_key: str) -> Worker:
    key = (profile, node_key)
    with _lock:
        worker = _workers.get(key)
        if worker is not None:
            _workers.move_to_end(key)
            return worker
    worker = _template(profile).fork()
    evicted = []
    with _lock:
        existing = _workers.get(key)
        if existing is not None:  # another thread won the race
            evicted.append(worker)
            worker = existing
        else:
            _workers[key] = worker
        while len(_workers) > _MAX_WORKERS:
            old_key, old = next(iter(_workers.items()))
            if not old.lock.acquire(blocking=False):
                _workers.move_to_end(old_key)
                break
            old.lock.release()
            del _workers[old_key]
            evicted.append(old)
    for old in evicted:
        old.close()
    return worker


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
    tpl = _template(profile)
    worker = tpl.fork()
    try:
        hello = dict(worker.hello)
    finally:
        worker.close()
    return {"isolation": "bwrap" if profile.bwrap else "process", "seccomp": bool(hello.get("seccomp")),
            "capabilities_dropped": bool(hello.get("capabilities_dropped")),
            "address_space_limit": hello.get("address_space_limit"), "allowed_imports": list(profile.allowed_imports),
            "allowed_directories": list(profile.allowed_directories)}


_released_later: list[str] = []  # keys of garbage-collected nodes, released at the next call


def release_sandbox_later(node_key: str) -> None:
    """Queue ``node_key``'s worker for release. Safe from a GC finalizer: it takes no lock
    (a finalizer can fire while this module, or a template, holds its lock)."""
    _released_later.append(node_key)


def _release_queued() -> None:
    while _released_later:
        try:
            key = _released_later.pop()
        except IndexError:  # another thread took the last one
            return
        release_sandbox(key)


def release_sandbox(node_key: str) -> None:
    """Stop the worker(s) of ``node_key``; its ``self`` state is discarded."""
    with _lock:
        gone = [(k, w) for k, w in _workers.items() if k[1] == node_key]
        for k, _ in gone:
            del _workers[k]
    for _, worker in gone:
        worker.close()


def shutdown_sandboxes() -> None:
    """Stop every template and worker of this process (also runs at exit)."""
    with _lock:
        workers = list(_workers.values())
        templates = list(_templates.values())
        _workers.clear()
        _templates.clear()
    for worker in workers:
        worker.dead = True
    for tpl in templates:
        tpl.close()


def _after_fork_in_child() -> None:
    """A forked host process must not share the parent's sandbox sockets: start afresh."""
    global _lock
    _lock = threading.Lock()
    for worker in list(_workers.values()):
        worker.dead = True
        try:
            worker.sock.close()
        except OSError:
            pass
    for tpl in list(_templates.values()):
        try:
            tpl.ctl.close()
        except OSError:
            pass
    _workers.clear()
    _templates.clear()
    _template_locks.clear()


atexit.register(shutdown_sandboxes)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


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
    _release_queued()
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
    for attempt in (1, 2):
        try:
            worker = _worker(profile, node_key)
        except SandboxUnavailable as exc:
            raise SecurityError(f"{label}: {exc}", node_id=node_id) from exc
        with worker.lock:
            if worker.idle_closed() or not worker.template.alive:  # died between calls: replace, retry once
                _forget(profile, node_key, worker)
                if attempt == 1:
                    continue
            started = time.monotonic()
            try:
                reply = worker.call(payload, timeout)
            except WireTimeout:
                _forget(profile, node_key, worker)
                _audit(config, "sandbox_timeout", node_id, code, timeout=timeout)
                raise NodeTimeoutError(
                    f"{label} exceeded its execution_timeout of {timeout}s and was stopped after "
                    f"{time.monotonic() - started:.2f}s (its sandbox worker was replaced; the node's state was reset)",
                    node_id=node_id, parameter="execution_timeout", expected=f"<= {timeout}s") from None
            except WireClosed:
                _forget(profile, node_key, worker)
                raise _crash_error(label, node_id, worker.exit_code, config, code) from None
        return _outcome(reply, label, node_id, code, config, secrets)
    raise SecurityError(f"{label}: the sandbox worker could not be started", node_id=node_id)  # pragma: no cover


def _picklable(value: Any) -> bool:
    try:
        pickle.dumps(value)
        return True
    except Exception:
        return False


def _forget(profile: Profile, node_key: str, worker: Worker) -> None:
    worker.kill()
    with _lock:
        if _workers.get((profile, node_key)) is worker:
            del _workers[(profile, node_key)]


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

