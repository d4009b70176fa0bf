"""Fixtures for the cross-host tests: hosts in network namespaces, a Dask cluster across them."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.netns import Hosts, require_netns

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
PY = sys.executable
# a cut-off worker is noticed by heartbeat, not by a closed connection: keep the waits short
FAST_FAILURE = {
    "DASK_DISTRIBUTED__SCHEDULER__WORKER_TTL": "4s",
    "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "3s",
    "DASK_DISTRIBUTED__COMM__TIMEOUTS__TCP": "12s",
    "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "3",
}


def env_for(host: str, *paths: Path, **extra: str) -> dict[str, str]:
    """A host's environment: kailash (the repo) plus ``paths`` importable, nothing else of the test's."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "KXC_", "DASK_"))}
    return {**base, **FAST_FAILURE, "PYTHONPATH": os.pathsep.join([str(ROOT), *map(str, paths)]),
            "KXC_HOST": host, **extra}


def wait_port(host: Hosts, name: str, port: int, timeout: float = 30) -> None:
    """Wait until ``name``'s ``port`` accepts (probed from inside that host)."""
    ip = host[name].ip
    deadline = time.monotonic() + timeout
    probe = f"import socket; socket.create_connection(('{ip}', {port}), timeout=1).close()"
    while True:
        done = subprocess.run(["ip", "netns", "exec", host[name].ns, PY, "-c", probe], capture_output=True)
        if done.returncode == 0:
            return
        assert time.monotonic() < deadline, f"{name} never listened on {ip}:{port}"
        time.sleep(0.2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def hosts() -> Iterator[Hosts]:
    require_netns()
    made = Hosts()
    try:
        for name in ("sched", "w1", "w2", "client", "gw1", "gw2"):
            made.add(name)
        yield made
    finally:
        made.close()


class DaskCluster:
    """A scheduler on host ``sched`` and one worker process on each of ``w1``, ``w2`` (no nanny:
    a killed worker stays dead), each worker in its own working directory."""

    def __init__(self, hosts: Hosts, tmp: Path, worker_paths: tuple[Path, ...]) -> None:
        self.hosts, self.tmp, self.worker_paths = hosts, tmp, worker_paths
        self.port = free_port()
        self.address = f"tcp://{hosts['sched'].ip}:{self.port}"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start_scheduler(self) -> None:
        self.procs["sched"] = self.hosts.start(
            "sched", [PY, "-m", "distributed.cli.dask_scheduler", "--host", self.hosts["sched"].ip,
                      "--port", str(self.port), "--no-dashboard"],
            env=env_for("sched"), cwd=self.tmp, log=self.tmp / "sched.log")
        wait_port(self.hosts, "sched", self.port)

    def start_worker(self, name: str, **extra: str) -> None:
        cwd = self.tmp / f"{name}-cwd"
        cwd.mkdir(exist_ok=True)
        self.procs[name] = self.hosts.start(
            name, [PY, "-m", "distributed.cli.dask_worker", self.address, "--host", self.hosts[name].ip,
                   "--nthreads", "2", "--no-nanny", "--no-dashboard", "--name", name,
                   "--local-directory", str(cwd)],
            env=env_for(name, *self.worker_paths, **extra), cwd=cwd, log=self.tmp / f"{name}.log")

    def wait_workers(self, n: int, timeout: float = 40) -> None:
        probe = (f"from distributed import Client; c = Client('{self.address}', timeout=10); "
                 f"c.wait_for_workers({n}, timeout={timeout}); c.close()")
        done = subprocess.run(["ip", "netns", "exec", self.hosts["client"].ns, PY, "-c", probe],
                              env=env_for("client"), capture_output=True, text=True, timeout=timeout + 15)
        assert done.returncode == 0, f"{n} workers never joined: {done.stderr[-2000:]}\n{self.logs()}"

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted(self.tmp.glob("*.log")))

    def client(self, scenario: str, **extra: str) -> subprocess.Popen[bytes]:
        """Start ``dask_client.py SCENARIO`` on host ``client``; its stdout goes to ``client.out``."""
        env = env_for("client", HERE / "on_workers", HERE / "client_only", KAILASH_HOME=str(self.tmp / "home"),
                      **extra)
        out = self.tmp / "client.out"
        return self.hosts.start("client", [PY, str(HERE / "dask_client.py"), scenario, self.address],
                                env=env, cwd=self.tmp, log=out)

    def result(self, proc: subprocess.Popen[bytes], timeout: float) -> dict:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError(f"the client hung for {timeout} s\n{self.logs()}") from None
        lines = [ln for ln in (self.tmp / "client.out").read_text().splitlines() if ln.startswith("{")]
        assert proc.returncode == 0 and lines, f"client exited {proc.returncode}\n{self.logs()}"
        return json.loads(lines[-1])

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)


@pytest.fixture
def dask_cluster(hosts: Hosts, tmp_path: Path) -> Iterator[DaskCluster]:
    pytest.importorskip("distributed")
    cluster = DaskCluster(hosts, tmp_path, (HERE / "on_workers",))
    try:
        yield cluster
    finally:
        cluster.stop()
        for host in hosts.hosts.values():  # whatever else a test started on a host
            for proc in host.procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
            host.procs.clear()
        subprocess.run(["ip", "link", "set", hosts["w1"].veth, "up"], check=False)
        subprocess.run(["ip", "link", "set", hosts["w2"].veth, "up"], check=False)
