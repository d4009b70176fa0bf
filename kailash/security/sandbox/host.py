"""Host-side handles on sandbox processes: starting templates, forking and killing workers.

A :class:`Template` is one pre-started sandbox process per policy (see
:mod:`kailash.security.sandbox.worker`); :class:`Worker` is the host's end of one
forked worker. This module only moves bytes and processes; it never unpickles
anything a worker sends except through
:func:`kailash.security.sandbox.wire.loads_result`, and it never runs user code.
"""

from __future__ import annotations

import json
import os
import queue
import select
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from kailash.errors import SecurityError
from kailash.security.sandbox.wire import (
    DEFAULT_MAX_RESULT_SIZE,
    ENVELOPE_ALLOWANCE,
    WireClosed,
    WireTimeout,
    loads_result,
    recv_bytes,
)

__all__ = ["Profile", "Template", "Worker", "SandboxUnavailable"]

_START_TIMEOUT = 60.0
_CTL_TIMEOUT = 10.0



# The template dies with the *thread* that started it (PR_SET_PDEATHSIG and bwrap's
# --die-with-parent follow the parent thread, not the process). Runtimes call nodes from
# short-lived pool threads, so templates are always started from one long-lived thread.
_launcher_lock = threading.Lock()
_launcher_jobs: queue.Queue[tuple[Any, dict[str, Any], threading.Event]] = queue.Queue()
_launcher_thread: threading.Thread | None = None


def _launcher_loop() -> None:
    while True:
        fn, box, done = _launcher_jobs.get()
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed back to the caller's thread
            box["error"] = exc
        done.set()


def _in_launcher(fn: Any) -> Any:
    """Run ``fn`` in the process-lifetime launcher thread and return its result."""
    global _launcher_thread
    if threading.current_thread() is _launcher_thread:
        return fn()
    with _launcher_lock:
        if _launcher_thread is None or not _launcher_thread.is_alive():
            _launcher_thread = threading.Thread(target=_launcher_loop, name="kailash-sandbox-launcher", daemon=True)
            _launcher_thread.start()
    box: dict[str, Any] = {}
    done = threading.Event()
    _launcher_jobs.put((fn, box, done))
    done.wait()
    if "error" in box:
        raise box["error"]
    return box["value"]


class SandboxUnavailable(SecurityError):
    """The sandbox process could not be started."""


@dataclass(frozen=True)
class Profile:
    """Everything that shapes a template: workers of one profile are interchangeable."""

    allowed_imports: tuple[str, ...]
    allowed_directories: tuple[str, ...]
    max_file_size: int | None
    memory_limit: int | None
    bwrap: bool
    raw_for_tests: bool = False
    landlock: bool = True  # tests switch it off to see the kernel-without-Landlock behaviour
    max_result_size: int = DEFAULT_MAX_RESULT_SIZE

    def readable(self) -> list[str]:
        """What workers of this profile may read (see :func:`~kailash.security.sandbox.files.readable_roots`)."""
        from kailash.security.sandbox.files import readable_roots

        return readable_roots(self.allowed_imports)

    def document(self, readable: list[str]) -> dict[str, Any]:
        from kailash.security.sandbox.isolation import python_library_dirs

        return {"allowed_imports": list(self.allowed_imports), "allowed_directories": list(self.allowed_directories),
                "max_file_size": self.max_file_size, "memory_limit": self.memory_limit,
                "library_roots": python_library_dirs(), "readable_roots": readable, "bwrap": self.bwrap,
                "seccomp": True, "landlock": self.landlock, "raw_for_tests": self.raw_for_tests,
                "max_result_size": self.max_result_size}


def _clean_env() -> dict[str, str]:
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "HOME": "/nonexistent",
           "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    if "TZ" in os.environ:
        env["TZ"] = os.environ["TZ"]
    return env  # nothing else: host credentials in the environment stay in the host


_empty_dir: list[str] = []


def _empty_cwd() -> str:
    """An empty, read-only directory: the working directory of process-mode sandboxes."""
    if not _empty_dir or not os.path.isdir(_empty_dir[0]):
        import atexit
        import shutil
        import tempfile

        path = tempfile.mkdtemp(prefix="kailash-sandbox-cwd-")
        os.chmod(path, 0o555)
        atexit.register(shutil.rmtree, path, True)
        _empty_dir[:] = [path]
    return _empty_dir[0]


class Template:
    """A running template process for one :class:`Profile`."""

    def __init__(self, profile: Profile) -> None:
        import kailash
        from kailash.security.sandbox.files import bwrap_command, namespaces_available, namespaces_command

        self.profile = profile
        self.lock = threading.Lock()
        self.ctl, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        root = os.path.dirname(os.path.dirname(os.path.abspath(kailash.__file__)))
        bootstrap = (f"import sys; sys.path.insert(0, {root!r}); "
                     "from kailash.security.sandbox.worker import main; main()")
        readable = profile.readable()
        cmd = [sys.executable, "-I", "-c", bootstrap, str(child.fileno()), json.dumps(profile.document(readable))]
        cwd = "/"
        if profile.bwrap:
            cmd = bwrap_command(readable, profile.allowed_directories) + ["--"] + cmd
        else:
            cwd = _empty_cwd()
            if namespaces_available():
                cmd = namespaces_command() + ["--"] + cmd
        debug = os.environ.get("KAILASH_SANDBOX_DEBUG")
        try:
            self.proc = _in_launcher(lambda: subprocess.Popen(
                cmd, pass_fds=[child.fileno()], env=_clean_env(), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=None if debug else subprocess.DEVNULL,
                start_new_session=True, close_fds=True, cwd=cwd,
            ))
        except OSError as exc:
            raise SandboxUnavailable(f"cannot start the code sandbox: {exc}") from exc
        finally:
            child.close()
        reply = self._recv(_START_TIMEOUT)
        if not reply.get("ready"):
            self.close()
            raise SandboxUnavailable(f"the code sandbox did not start: {reply}")
        self.missing = set(reply.get("missing") or ())

    def _recv(self, timeout: float) -> dict[str, Any]:
        self.ctl.settimeout(timeout)
        try:
            data = self.ctl.recv(65536)
        except (TimeoutError, OSError) as exc:
            self.close()
            raise SandboxUnavailable(f"the code sandbox stopped answering ({type(exc).__name__})") from exc
        if not data:
            self.close()
            raise SandboxUnavailable("the code sandbox exited unexpectedly; set KAILASH_SANDBOX_DEBUG=1 to see why")
        return json.loads(data)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def fork(self) -> Worker:
        """A new worker (it locks itself down before answering)."""
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with self.lock:
                socket.send_fds(self.ctl, [json.dumps({"op": "fork"}).encode()], [theirs.fileno()])
                reply = self._recv(_CTL_TIMEOUT)
        except OSError as exc:
            mine.close()
            self.close()
            raise SandboxUnavailable(f"the code sandbox stopped answering: {exc}") from exc
        finally:
            theirs.close()
        worker = Worker(self, mine, reply["pid"])
        worker.hello = worker.receive(time.monotonic() + _START_TIMEOUT)
        return worker

    def kill(self, pid: int) -> int | None:
        """SIGKILL worker ``pid`` and reap it; its exit code (negative = signal), if known."""
        if not self.alive:
            return None
        try:
            with self.lock:
                self.ctl.send(json.dumps({"op": "kill", "pid": pid}).encode())
                return self._recv(_CTL_TIMEOUT).get("status")
        except (OSError, SandboxUnavailable):
            self.close()
            return None

    def close(self) -> None:
        """Stop the template; its workers die with it (process group / PID namespace)."""
        try:
            self.ctl.close()
        except OSError:
            pass
        proc = getattr(self, "proc", None)
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, 9)
            except OSError:
                proc.kill()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


class Worker:
    """The host's end of one worker process (it hosts the ``self`` state of many nodes)."""

    def __init__(self, template: Template, sock: socket.socket, pid: int) -> None:
        self.template = template
        self.sock = sock
        self.pid = pid
        self.dead = False
        self.exit_code: int | None = None
        self.hello: dict[str, Any] = {}

    def receive(self, deadline: float | None) -> dict[str, Any]:
        try:
            # bounded by the policy: the reply format has no back-references, so what is built
            # from it is proportional to these bytes
            data = recv_bytes(self.sock, deadline, self.template.profile.max_result_size + ENVELOPE_ALLOWANCE)
        except WireTimeout:
            raise
        except (WireClosed, OSError) as exc:
            self.kill()
            raise WireClosed(str(exc)) from exc
        try:
            reply = loads_result(data)
        except Exception as exc:  # a worker sent something other than plain data: treat it as hostile
            self.kill()
            raise SecurityError(f"the sandbox worker sent a malformed reply ({exc})") from exc
        if not isinstance(reply, dict):
            self.kill()
            raise SecurityError("the sandbox worker sent a malformed reply")
        return reply

    def release(self, node_keys: list[str]) -> None:
        """Discard the ``self`` state of ``node_keys`` in this worker (the caller holds the slot)."""
        import pickle

        try:
            self.call(pickle.dumps({"op": "release", "node_keys": list(node_keys)}), _CTL_TIMEOUT)
        except (WireClosed, WireTimeout, SecurityError):
            self.kill()

    def idle_closed(self) -> bool:
        """Whether the worker went away while idle (its socket is readable: EOF or junk)."""
        if self.dead:
            return True
        # poll, not select: select() cannot watch descriptors numbered 1024 or above,
        # which a busy host process (many sockets, databases) reaches.
        poller = select.poll()
        try:
            poller.register(self.sock, select.POLLIN | select.POLLHUP | select.POLLERR)
            return bool(poller.poll(0))
        except (OSError, ValueError):
            return True

    def call(self, payload: bytes, timeout: float | None) -> dict[str, Any]:
        """Send one request and wait for the reply; raises WireTimeout / WireClosed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            self.sock.settimeout(timeout if timeout is not None else None)
            self.sock.sendall(len(payload).to_bytes(8, "big") + payload)
        except (TimeoutError, OSError) as exc:
            self.kill()
            raise WireClosed(f"cannot send to the sandbox worker: {exc}") from exc
        try:
            return self.receive(deadline)
        except WireTimeout:
            self.kill()
            raise

    def kill(self) -> int | None:
        if not self.dead:
            self.dead = True
            try:
                self.sock.close()
            except OSError:
                pass
            self.exit_code = self.template.kill(self.pid)
        return self.exit_code

    def close(self) -> None:
        """Release the worker (and the node state in it)."""
        self.kill()
