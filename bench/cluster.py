"""Scale curve of DaskRuntime across hosts (issue 17). Needs root (network namespaces).

A Dask scheduler, up to four workers (one process, one thread each) and the submitting
client, each on its own host (a Linux network namespace joined to the others by a bridge;
see tests/cluster/netns.py), all on this one machine:

* 100 independent 10 ms CPU-bound nodes on 1, 2 and 4 workers: ``DaskRuntime`` wall time,
  speed-up against 1 worker, and overhead against bare Dask (``client.submit`` of the same
  100 functions + ``gather``) on the same cluster.
* Graph size (4 workers): 100, 1,000 and 10,000 independent trivial nodes: the client's
  plan + serialise time, the run's wall time, and bare Dask's for the same number of tasks.

The hosts share this machine's cores (``os.cpu_count()``, printed): the speed-up is bounded
by them, not by the network. Run recording is ON (SQLite in a temporary KAILASH_HOME).
Timings are the best of 3 (one run for 10,000 nodes). Run: ``sudo python bench/cluster.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from kailash.nodes.base import Node, NodeParameter  # noqa: E402

__all__ = ["main"]


def busy(index: int, ms: float = 10.0) -> int:
    end = time.perf_counter() + ms / 1000
    while time.perf_counter() < end:
        pass
    return index


class Busy(Node):
    """10 ms of CPU (holds the GIL: a worker thread does one at a time)."""

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {"index": NodeParameter(type=int, default=0)}

    def run(self, index: int = 0) -> dict[str, Any]:
        return {"result": busy(index)}


class Tiny(Node):
    def get_parameters(self) -> dict[str, NodeParameter]:
        return {"index": NodeParameter(type=int, default=0)}

    def run(self, index: int = 0) -> dict[str, Any]:
        return {"result": index}


def _best(fn: Any, reps: int = 3) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _workflow(cls: type, n: int) -> Any:
    from kailash.workflow import Workflow

    wf = Workflow(f"{cls.__name__.lower()}{n}")
    for i in range(n):
        wf.add_node(f"n{i}", cls(index=i))
    return wf


def client_main(address: str, workers: int, sizes: list[int]) -> dict[str, Any]:
    """On the client host: the measurements for a cluster of ``workers`` workers."""
    import cloudpickle

    from kailash.runtime.distributed import DaskRuntime

    out: dict[str, Any] = {"workers": workers}
    with DaskRuntime(address=address, connect_timeout=30) as runtime:
        client = runtime.client
        client.wait_for_workers(workers, timeout=60)
        wf = _workflow(Busy, 100)
        runtime.execute(wf)  # warm: the workers import kailash and load the plan's classes once
        out["kailash"] = _best(lambda: runtime.execute(wf))
        out["bare"] = _best(lambda: client.gather([client.submit(busy, i, pure=False) for i in range(100)]))
        for n in sizes:
            wf = _workflow(Tiny, n)
            start = time.perf_counter()
            cloudpickle.dumps(wf.compile())
            plan = time.perf_counter() - start
            reps = 1 if n >= 10_000 else 3
            run = _best(lambda: runtime.execute(wf), reps)  # noqa: B023
            bare = _best(lambda: client.gather([client.submit(Tiny.run, None, i, pure=False)  # noqa: B023
                                                for i in range(n)]), reps)  # noqa: B023
            out[f"graph{n}"] = {"plan": plan, "run": run, "bare": bare}
    return out


def measure() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    from tests.cluster.netns import Hosts, netns_available

    why = netns_available()
    if why is not None:
        raise SystemExit(f"bench/cluster.py: {why}")
    py = sys.executable
    hosts = Hosts()
    tmp = Path(tempfile.mkdtemp(prefix="kx-bench-"))
    try:
        for name in ("sched", "w1", "w2", "w3", "w4", "client"):
            hosts.add(name)
        base = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}
        env = {**base, "PYTHONPATH": str(ROOT), "KAILASH_HOME": str(tmp / "home")}
        address = f"tcp://{hosts['sched'].ip}:8786"
        hosts.start("sched", [py, "-m", "distributed.cli.dask_scheduler", "--host", hosts["sched"].ip,
                              "--port", "8786", "--no-dashboard"], env=env, cwd=tmp, log=tmp / "sched.log")
        curve, graph = [], []
        started = 0
        for workers in (1, 2, 4):
            while started < workers:
                started += 1
                name = f"w{started}"
                (tmp / name).mkdir()
                hosts.start(name, [py, "-m", "distributed.cli.dask_worker", address, "--host", hosts[name].ip,
                                   "--nthreads", "1", "--no-nanny", "--no-dashboard", "--name", name,
                                   "--local-directory", str(tmp / name)], env=env, cwd=tmp / name,
                            log=tmp / f"{name}.log")
            sizes = [100, 1_000, 10_000] if workers == 4 else []
            done = subprocess.run(["ip", "netns", "exec", hosts["client"].ns, py, __file__, "--client", address,
                                   str(workers), *map(str, sizes)], env=env, capture_output=True, text=True,
                                  timeout=900)
            if done.returncode != 0:
                raise SystemExit(f"the client failed:\n{done.stderr[-3000:]}")
            row = json.loads(done.stdout.strip().splitlines()[-1])
            curve.append(row)
            for n in sizes:
                graph.append({"nodes": n, **row[f"graph{n}"]})
        return curve, graph
    finally:
        hosts.close()


def format_tables(curve: list[dict[str, Any]], graph: list[dict[str, Any]]) -> str:
    one = curve[0]["kailash"]
    lines = [f"100 x 10 ms CPU nodes, 1 thread per worker, {os.cpu_count()} cores on the machine",
             "| workers | DaskRuntime (s) | speed-up vs 1 | bare Dask (s) | overhead vs bare |",
             "|---:|---:|---:|---:|---:|"]
    for r in curve:
        lines.append(f"| {r['workers']} | {r['kailash']:.3f} | {one / r['kailash']:.2f}x | {r['bare']:.3f} "
                     f"| {100 * (r['kailash'] / r['bare'] - 1):+.0f}% |")
    lines += ["", "graph size, 4 workers, trivial nodes",
              "| nodes | plan + serialise (s) | DaskRuntime run (s) | per node (ms) | bare Dask (s) | per task (ms) |",
              "|---:|---:|---:|---:|---:|---:|"]
    for g in graph:
        n = g["nodes"]
        lines.append(f"| {n:,} | {g['plan']:.3f} | {g['run']:.3f} | {1000 * g['run'] / n:.2f} | {g['bare']:.3f} "
                     f"| {1000 * g['bare'] / n:.2f} |")
    return "\n".join(lines)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        out = client_main(sys.argv[2], int(sys.argv[3]), [int(n) for n in sys.argv[4:]])
        print(json.dumps(out))
        return 0
    curve, graph = measure()
    print("cluster scale curve (issue 17): scheduler, workers and client on separate network-namespace hosts")
    print(format_tables(curve, graph))
    return 0


if __name__ == "__main__":
    sys.exit(main())
