"""The processes on the far side of the sandbox: a template and the workers it forks.

The host starts one *template* per policy (inside bubblewrap when available). The
template imports the allowed modules once and then only forks: each fork becomes a
*worker* hosting many PythonCodeNode instances of that policy (a bounded pool, see
:mod:`kailash.security.sandbox.pool`); each node's ``self`` state lives in the worker
between executions, keyed by the node's identity, and a warm call costs a socket round
trip. A worker locks itself down right after the fork (rlimits, no capabilities, not
dumpable, Landlock, seccomp, the audit hook) and then runs requests until the host
closes its socket or kills it.

Control messages between host and template are small JSON documents on a
SOCK_SEQPACKET socket (worker sockets travel as passed file descriptors); worker
traffic uses :mod:`kailash.security.sandbox.wire`. The template never runs user code.
"""

from __future__ import annotations

import gc
import io
import json
import os
import signal
import socket
import sys
import traceback
import types
from typing import Any

__all__ = ["main"]

_CTL_MAX = 65536


def _send_ctl(ctl: socket.socket, doc: dict[str, Any]) -> None:
    ctl.send(json.dumps(doc).encode())


def main(argv: list[str] | None = None) -> None:
    """Template entry point: ``main([control_fd, profile_json])``."""
    args = sys.argv[1:] if argv is None else argv
    ctl = socket.socket(fileno=int(args[0]))
    profile = json.loads(args[1])
    from kailash.security.sandbox.isolation import set_parent_death_signal

    set_parent_death_signal(signal.SIGKILL)
    if os.getppid() == 1 and not profile.get("bwrap"):
        os._exit(0)  # the host died while we started
    try:
        os.setsid()
    except OSError:
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    missing = _warm_up(profile["allowed_imports"])
    gc.collect()
    gc.freeze()
    _send_ctl(ctl, {"ready": True, "pid": os.getpid(), "missing": missing})
    statuses: dict[int, int] = {}
    while True:
        try:
            data, fds, _flags, _addr = socket.recv_fds(ctl, _CTL_MAX, 4)
        except OSError:
            break
        if not data:
            break
        _reap(statuses)
        msg = json.loads(data)
        if msg["op"] == "fork" and fds:
            pid = os.fork()
            if pid == 0:
                code = 70
                try:
                    ctl.close()
                    _worker_main(fds[0], profile)
                    code = 0
                except BaseException:  # pragma: no cover - reported by the host as a crash
                    traceback.print_exc()
                finally:
                    os._exit(code)
            for fd in fds:
                os.close(fd)
            _send_ctl(ctl, {"pid": pid})
        elif msg["op"] == "kill":
            _send_ctl(ctl, {"status": _kill(msg["pid"], statuses)})
        else:
            for fd in fds:
                os.close(fd)
            _send_ctl(ctl, {"error": f"unknown op {msg.get('op')!r}"})
    for pid in list(statuses):
        statuses.pop(pid)
    try:
        os.killpg(0, signal.SIGKILL)
    finally:
        os._exit(0)


def _warm_up(modules: list[str]) -> list[str]:
    import importlib

    import kailash.security.sandbox.guards  # noqa: F401
    import kailash.security.sandbox.policy  # noqa: F401
    import kailash.security.sandbox.wire  # noqa: F401
    from kailash.security.sandbox.isolation import preload

    preload()
    missing = []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:
            missing.append(name)
    for lazy in ("_strptime", "encodings.idna", "json.decoder", "json.encoder"):
        try:
            importlib.import_module(lazy)
        except Exception:
            pass
    return missing


def _reap(statuses: dict[int, int]) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        statuses[pid] = status


def _kill(pid: int, statuses: dict[int, int]) -> int | None:
    if pid not in statuses:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            _, status = os.waitpid(pid, 0)
            statuses[pid] = status
        except ChildProcessError:
            return None
    return os.waitstatus_to_exitcode(statuses.pop(pid))


# -- the worker ---------------------------------------------------------------------------------

def _worker_main(fd: int, profile: dict[str, Any]) -> None:
    from kailash.security.sandbox.files import apply_landlock
    from kailash.security.sandbox.guards import SandboxEnvironment, SandboxState
    from kailash.security.sandbox.isolation import (
        apply_worker_limits,
        drop_capabilities,
        install_read_only_files,
        install_seccomp,
        set_not_dumpable,
        set_parent_death_signal,
    )
    from kailash.security.sandbox.wire import DEFAULT_MAX_RESULT_SIZE, ResultRefused, WireClosed, recv_msg, send_reply

    set_parent_death_signal(signal.SIGKILL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    sys.dont_write_bytecode = True  # lazy imports must not try to write .pyc files
    sock = socket.socket(fileno=fd)
    env = SandboxEnvironment(allowed_imports=profile["allowed_imports"],
                             allowed_directories=profile["allowed_directories"],
                             max_file_size=profile.get("max_file_size"), library_roots=profile["library_roots"])
    limit = apply_worker_limits(memory_limit=profile.get("memory_limit"), max_file_size=profile.get("max_file_size"))
    capabilities_dropped = drop_capabilities()
    set_not_dumpable()
    # Landlock: only the interpreter, its libraries and the allowed directories from here on.
    landlock = apply_landlock(profile.get("readable_roots") or [], profile["allowed_directories"]) \
        if profile.get("landlock", True) else 0
    read_only = False
    if not landlock and not profile.get("bwrap"):  # nothing else confines writes: refuse them all
        read_only = install_read_only_files()
    seccomp = install_seccomp() if profile.get("seccomp", True) else False
    gates = env.install_audit_hook()
    send_reply(sock, {"status": "ready", "pid": os.getpid(), "seccomp": seccomp, "address_space_limit": limit,
                      "capabilities_dropped": capabilities_dropped, "landlock": landlock,
                      "read_only_files": read_only})
    runner = _Runner(env, gates, SandboxState, profile.get("max_result_size") or DEFAULT_MAX_RESULT_SIZE)
    gc.disable()  # cyclic garbage (user objects with finalizers) is collected only while the audit hook is on
    while True:
        try:
            request = recv_msg(sock)
        except (WireClosed, OSError):
            return
        except MemoryError:
            send_reply(sock, {"status": "memory", "message": "the inputs do not fit in the memory limit", "line": 0})
            continue
        try:
            reply = _serve(runner, request, profile)
        except MemoryError:
            reply = {"status": "memory", "message": "out of memory", "line": 0}
        except Exception as exc:  # e.g. RecursionError checking absurdly nested code
            reply = {"status": "error", "type": type(exc).__name__, "builtin": True, "line": 0,
                     "message": f"the sandbox could not run this code: {exc}"[:2000]}
        del request
        try:
            send_reply(sock, reply)
        except MemoryError:
            send_reply(sock, {"status": "memory", "message": "the result does not fit in the memory limit", "line": 0})
        except ResultRefused as exc:  # a reply built around something that is not plain data
            send_reply(sock, {"status": "unsendable", "message": str(exc)})
        del reply


_CACHE_MAX = 4096  # compiled code objects kept per worker (one worker hosts many nodes)


class _Runner:
    """Compiles (with a cache) and runs requests inside one worker, for every node it hosts.

    Each node's ``self`` state is keyed by the node's identity (``node_key``); the host
    releases it when the node is collected.
    """

    def __init__(self, env: Any, gates: tuple[Any, Any], state_cls: type, max_result_size: int) -> None:
        self.env = env
        self.activate, self.deactivate = gates
        self.state_cls = state_cls
        self.max_result_size = max_result_size
        self.states: dict[str, Any] = {}
        self.cache: dict[tuple[str, tuple[str, ...]], types.CodeType] = {}

    def release(self, node_keys: list[str]) -> None:
        # A state's objects may have finalizers written by the code: drop them with the hook on.
        self.activate()
        gc.enable()
        try:
            for key in node_keys:
                self.states.pop(key, None)
            gc.collect()
        finally:
            gc.disable()
            self.deactivate()

    def run(self, req: dict[str, Any]) -> dict[str, Any]:
        from kailash.errors import SecurityError
        from kailash.security.sandbox.guards import UNSET
        from kailash.security.sandbox.isolation import set_cpu_limit
        from kailash.security.sandbox.policy import CodeRejected, bindable, prepare_code
        from kailash.security.sandbox.wire import Raw, ResultRefused, encode

        env = self.env
        inputs: dict[str, Any] = req["inputs"]
        names = tuple(sorted(n for n in inputs if bindable(n)))
        key = (req["code"], names)
        code = self.cache.get(key)
        if code is None:
            try:
                code = prepare_code(req["code"], names, env.allowed_imports)
            except CodeRejected as exc:
                return {"status": "rejected", "problems": exc.problems, "syntax": exc.syntax}
            if len(self.cache) >= _CACHE_MAX:  # drop the oldest entry
                del self.cache[next(iter(self.cache))]
            self.cache[key] = code
        env.violations.clear()
        try:
            g = env.globals_for(req.get("imports") or ())
        except SecurityError as exc:
            return {"status": "violation", "message": str(exc), "line": 0}
        except ImportError as exc:
            return {"status": "error", "type": "ImportError", "builtin": True, "message": str(exc), "line": 0}
        fn = types.FunctionType(code, g, "__kx_main__")
        state = self.states.get(req["node_key"])
        if state is None:
            state = self.states[req["node_key"]] = self.state_cls()
        kwargs = {n: inputs[n] for n in names}
        env.output = io.StringIO()
        set_cpu_limit(float(req.get("timeout") or 3600) + 1.0)
        value: Any = None
        encoded = b""
        problem = None
        error: dict[str, Any] | None = None
        self.activate()
        gc.enable()
        try:
            value = fn(state, **kwargs)
            gc.disable()  # no finalizer may change the result while it is encoded
            if value is not UNSET:
                encoded = encode(value, self.max_result_size)  # exact types only: runs no user code
        except ResultRefused as exc:
            problem = str(exc)
        except BaseException as exc:  # noqa: B036 - user code may raise anything, even SystemExit
            error = _describe(exc)
        finally:
            # Every user object goes while the hook is on, so no finalizer runs outside it.
            is_unset = value is UNSET
            value = fn = g = kwargs = state = None  # type: ignore[assignment]
            gc.disable()
            self.deactivate()
        stdout = env.output.getvalue()[: env.output_limit]
        if env.violations:
            return {"status": "violation", "message": env.violations[0], "line": (error or {}).get("line", 0),
                    "stdout": stdout}
        if error is not None:
            return {**error, "stdout": stdout}
        if is_unset:
            return {"status": "unset", "stdout": stdout}
        if problem:
            return {"status": "unsendable", "message": problem, "stdout": stdout}
        return {"status": "ok", "result": Raw(encoded), "stdout": stdout}


def _serve(runner: _Runner, request: dict[str, Any], profile: dict[str, Any]) -> dict[str, Any]:
    if request.get("op") == "release":  # nodes collected by the host: drop their namespaces
        runner.release(request["node_keys"])
        return {"status": "ok", "result": None}
    return _raw(request) if profile.get("raw_for_tests") else runner.run(request)


def _raw(req: dict[str, Any]) -> dict[str, Any]:
    """TEST ONLY (a profile flag only the host's test helper sets): run ``req["code"]`` with the
    real builtins and no Python guard, so tests see what the OS layer alone allows."""
    scope: dict[str, Any] = {}
    try:
        exec(req["code"], scope)  # noqa: S102 - the OS layer's own tests
    except BaseException as exc:  # noqa: B036
        return {"status": "ok", "result": {"raised": f"{type(exc).__name__}: {exc}"[:500]}}
    return {"status": "ok", "result": scope.get("result")}


def _describe(exc: BaseException) -> dict[str, Any]:
    import builtins

    from kailash.security.sandbox.policy import SANDBOX_FILENAME

    line = 0
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == SANDBOX_FILENAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    from kailash.errors import SecurityError
    from kailash.security.sandbox.facades import plain_str

    tp = type(exc)  # the exception and its class may be user objects: read only exact strs from them
    name = type.__dict__["__name__"].__get__(tp)
    name = name if type(name) is str else "Exception"
    try:
        text = str(exc)
        message = plain_str(text) if isinstance(text, str) else "<unprintable exception>"
    except BaseException:  # noqa: B036
        message = "<unprintable exception>"
    status = "memory" if issubclass(tp, MemoryError) else "violation" if issubclass(tp, SecurityError) else "error"
    return {"status": status, "type": name, "builtin": getattr(builtins, name, None) is tp,
            "message": message[:2000], "line": line}


if __name__ == "__main__":  # pragma: no cover
    main()
