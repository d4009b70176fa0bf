"""Separate hosts on one machine: Linux network namespaces joined by a bridge.

:class:`Hosts` makes one namespace per host (``kxh-<pid>-<n>-<name>``), each with a veth pair
whose root end sits on a bridge (``kxb<pid>x<n>``) in the root namespace, and an address in a
private ``10.231.N.0/24`` range free on this machine (the bridge is ``.1``, so a relay in
the root namespace can serve every host). Processes start inside a host with
``ip netns exec`` (the command replaces ``ip``: its pid is the real process, so SIGKILL
reaches it). :meth:`Hosts.cut` takes a host's link down (it stays alive but unreachable).

:meth:`Hosts.close` kills every process in every namespace it made, then deletes the
namespaces (their veths go with them) and the bridge; it also runs at exit. Creating a
``Hosts`` first removes leftovers of earlier runs whose creating process is gone.
Needs root and ``ip``; :func:`require_netns` skips otherwise (but fails under ``CI=true``
when ``KAILASH_REQUIRE_NETNS=1``, so a machine that can run these never skips silently).
"""

from __future__ import annotations

import atexit
import itertools
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PREFIX = "kxh-"
_instances = itertools.count()


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=20)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def netns_available() -> str | None:
    """``None`` when namespaces can be made here, else why not."""
    if os.name != "posix" or not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    probe = f"{PREFIX}{os.getpid()}-probe"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


def require_netns() -> None:
    why = netns_available()
    if why is not None:
        if os.environ.get("KAILASH_REQUIRE_NETNS") == "1":
            pytest.fail(f"KAILASH_REQUIRE_NETNS=1 but {why}")
        pytest.skip(why)


def _ns_pids(ns: str) -> list[int]:
    out = _ip("netns", "pids", ns, check=False).stdout
    return [int(p) for p in out.split()]


def _kill_namespace(ns: str) -> None:
    for _ in range(50):
        pids = _ns_pids(ns)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    _ip("netns", "del", ns, check=False)


def clean_leftovers() -> None:
    """Remove namespaces and bridges of earlier test runs whose process is gone (a crashed run)."""
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        m = re.match(rf"({re.escape(PREFIX)}(\d+)-\S+)", line)
        if m and not _alive(int(m.group(2))):
            _kill_namespace(m.group(1))
    for line in _ip("-br", "link", "show", "type", "bridge", check=False).stdout.splitlines():
        m = re.match(r"(kxb(\d+)x\d+)\b", line)
        if m and not _alive(int(m.group(2))):
            _ip("link", "del", m.group(1), check=False)


def _free_subnet() -> str:
    used = _ip("-4", "-br", "addr", check=False).stdout
    for n in [(os.getpid() + k) % 250 + 2 for k in range(250)]:
        if f"10.231.{n}." not in used:
            return f"10.231.{n}"
    raise RuntimeError("no free 10.231.N.0/24 subnet")


@dataclass
class Host:
    name: str
    ns: str
    ip: str
    veth: str  # the root end, on the bridge
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)


class Hosts:
    """Hosts on one machine, each in its own network namespace; see the module docstring."""

    def __init__(self) -> None:
        clean_leftovers()
        n = next(_instances)
        self.tag = f"{os.getpid()}-{n}"  # leftovers are told by the pid: see clean_leftovers
        self.bridge = f"kxb{os.getpid()}x{n}"
        self.hosts: dict[str, Host] = {}
        self._closed = False
        self.subnet = _free_subnet()
        self.gateway = f"{self.subnet}.1"
        _ip("link", "add", self.bridge, "type", "bridge")
        atexit.register(self.close)
        _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")

    def add(self, name: str) -> Host:
        i = len(self.hosts) + 10
        ns = f"{PREFIX}{self.tag}-{name}"
        veth = f"kxv{str(os.getpid())[-7:]}{self.bridge.rsplit('x', 1)[1]}x{len(self.hosts)}"[:15]
        host = Host(name, ns, f"{self.subnet}.{i}", veth)
        _ip("netns", "add", ns)
        self.hosts[name] = host
        _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        _ip("link", "set", veth, "master", self.bridge, "up")
        _ip("-n", ns, "addr", "add", f"{host.ip}/24", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", ns, "route", "add", "default", "via", self.gateway)
        return host

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def start(self, name: str, argv: list[str], *, env: dict[str, str] | None = None, cwd: str | Path | None = None,
              log: Path | None = None) -> subprocess.Popen[bytes]:
        """Start ``argv`` on host ``name`` (stdout and stderr to ``log``, else discarded)."""
        host = self.hosts[name]
        out = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115
        try:
            proc = subprocess.Popen(["ip", "netns", "exec", host.ns, *argv], env=env, cwd=cwd,
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            if log is not None:
                out.close()  # type: ignore[union-attr]
        host.procs.append(proc)
        return proc

    def cut(self, name: str) -> None:
        """Take host ``name``'s link down: its processes live on, unreachable (no RST, no FIN)."""
        _ip("link", "set", self.hosts[name].veth, "down")

    def kill(self, name: str) -> None:
        """SIGKILL every process on host ``name``."""
        for pid in _ns_pids(self.hosts[name].ns):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for proc in self.hosts[name].procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                pass

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for host in self.hosts.values():
            for proc in host.procs:
                if proc.poll() is None:
                    proc.kill()
            _kill_namespace(host.ns)
            for proc in host.procs:
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    pass
        _ip("link", "del", self.bridge, check=False)
