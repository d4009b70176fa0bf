"""The kernel-enforced layers on their own: seccomp, rlimits and the bubblewrap command.

These run the layer in a fresh child process with raw Python (no guards), to show
each holds even if everything above it were bypassed.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import uuid

import pytest

from kailash.security.sandbox.files import bwrap_available, bwrap_command, readable_roots

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run_child(script: str, prefix: list[str] | None = None) -> dict:
    cmd = (prefix or []) + [sys.executable, "-I", "-c",
                            f"import sys; sys.path.insert(0, {ROOT!r})\n" + textwrap.dedent(script)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd="/")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


ATTEMPTS = """
import json, os, resource, socket, threading
from kailash.security.sandbox.isolation import apply_worker_limits, drop_capabilities, install_seccomp

def capabilities():
    with open("/proc/self/status") as f:
        return {k: int(v, 16) for k, v in (line.split(":\t") for line in f) if k in ("CapEff", "CapPrm", "CapBnd")}

def attempt(fn):
    try:
        fn()
        return "allowed"
    except OSError as exc:
        return f"errno {exc.errno}"
    except ValueError as exc:  # setrlimit reports EPERM as ValueError
        return "refused"

out = {"limit": apply_worker_limits(memory_limit=64 * 1024 * 1024, max_file_size=4096),
       "dropped": drop_capabilities(), "caps": capabilities(), "seccomp": install_seccomp()}
out["fork"] = attempt(os.fork)
out["exec"] = attempt(lambda: os.execv("/bin/true", ["true"]))
out["socket"] = attempt(socket.socket)
out["kill_init"] = attempt(lambda: os.kill(1, 0))
out["kill_self"] = attempt(lambda: os.kill(os.getpid(), 0))
out["raise_as"] = attempt(lambda: resource.setrlimit(resource.RLIMIT_AS, (-1, -1)))
t = threading.Thread(target=lambda: None)
out["thread"] = attempt(lambda: (t.start(), t.join()))
try:
    bytearray(256 * 1024 * 1024)
    out["alloc"] = "allowed"
except MemoryError:
    out["alloc"] = "MemoryError"
print(json.dumps(out))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="seccomp is Linux-only")
def test_seccomp_rlimits_and_capabilities_refuse_process_creation_sockets_and_signals():
    out = _run_child(ATTEMPTS)
    assert out["dropped"] is True and out["caps"] == {"CapEff": 0, "CapPrm": 0, "CapBnd": 0}
    assert out["seccomp"] is True
    assert out["fork"] == out["exec"] == out["socket"] == out["kill_init"] == "errno 1"
    assert out["raise_as"] == "refused"
    assert out["kill_self"] == "allowed" and out["thread"] == "allowed"
    assert out["alloc"] == "MemoryError" and out["limit"] > 64 * 1024 * 1024


BWRAP_PROBE = """
import json, os, socket
out = {"pid": os.getpid()}
with open(os.path.join(ALLOWED, "written.txt"), "w") as f:
    f.write("inside")
try:
    open("/etc/kailash-bwrap-probe", "w")
    out["etc"] = "writable"
except OSError as exc:
    out["etc"] = exc.errno
out["root"] = sorted(os.listdir("/"))
out["tmp"] = sorted(os.listdir("/tmp")) if os.path.exists("/tmp") else []  # only the allowed dir's parents
out["home_visible"] = os.path.exists(HOST_FILE)
try:
    socket.create_connection(("127.0.0.1", PORT), timeout=2)
    out["net"] = "connected"
except OSError as exc:
    out["net"] = type(exc).__name__
print(json.dumps(out))
"""


@pytest.mark.skipif(not bwrap_available(), reason="bubblewrap is not available")
def test_bubblewrap_hides_the_host_and_blocks_the_network(tmp_path):
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    host_file = f"/tmp/kailash-host-only-{uuid.uuid4().hex}"
    open(host_file, "w").close()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.5)
    try:
        script = (f"ALLOWED = {str(allowed)!r}; HOST_FILE = {host_file!r}; PORT = {listener.getsockname()[1]}\n"
                  + BWRAP_PROBE)
        out = _run_child(script, bwrap_command(readable_roots(), [str(allowed)]))
        with pytest.raises(socket.timeout):
            listener.accept()
    finally:
        listener.close()
        os.unlink(host_file)
    assert (allowed / "written.txt").read_text() == "inside"
    assert out["etc"] in (2, 30)  # no /etc at all, on a read-only root
    assert out["home_visible"] is False and os.path.basename(host_file) not in out["tmp"]
    assert not {"etc", "home", "srv", "var"} & set(out["root"]), out["root"]  # /root only if the interpreter lives there
    assert out["net"] in ("ConnectionRefusedError", "OSError")  # an empty network namespace
    assert out["pid"] < 10  # its own PID namespace


def test_the_file_view_never_holds_the_source_checkout(monkeypatch):
    """Not even when the virtualenv was made at the root of the checkout (sys.prefix == project)."""
    roots = readable_roots(["json", "zoneinfo"])
    assert os.path.join(ROOT, "kailash") in roots
    assert not any(ROOT == r or ROOT.startswith(r.rstrip("/") + "/") for r in roots), roots
    assert not {"/", "/etc", "/home", "/root", "/tmp", "/proc"} & set(roots)
    monkeypatch.setattr(sys, "prefix", ROOT)
    monkeypatch.setattr(sys, "exec_prefix", ROOT)
    roots = readable_roots()
    assert not any(ROOT == r or ROOT.startswith(r.rstrip("/") + "/") for r in roots), roots
