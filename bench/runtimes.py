"""Benchmark of the runtimes (issue 3): concurrency, per-node overhead, Dask overhead.

* 20 async nodes each awaiting 50 ms under ``ParallelRuntime`` (target: ≤ 80 ms wall;
  ``LocalRuntime`` runs them one after another, ~1 s).
* 100 independent trivial nodes: overhead per node of ``ParallelRuntime`` (sync nodes go
  through the thread pool, async ones stay on the loop) beside ``LocalRuntime``.
* A 100-node fan (one source feeding 100 trivial nodes) on the embedded 2-worker Dask
  cluster: ``DaskRuntime`` beside ``dask.delayed`` computing the same graph on the same
  client (target: ours adds < 20%), and bare ``client.submit`` calls as the floor.

Run recording is ON (the default SQLite store in a temporary ``KAILASH_HOME``).
Timings are the best of several repetitions. Run: ``python bench/runtimes.py``.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from kailash.nodes.base import Node, NodeParameter  # noqa: E402
from kailash.nodes.base_async import AsyncNode  # noqa: E402

__all__ = ["main", "measure"]


class Nap(AsyncNode):
    """Awaits 50 ms."""

    async def async_run(self) -> dict[str, Any]:
        await asyncio.sleep(0.05)
        return {"result": 1}


class Trivial(Node):
    def get_parameters(self) -> dict[str, NodeParameter]:
        return {"x": NodeParameter(default=0)}

    def run(self, x: Any = 0) -> dict[str, Any]:
        return {"result": x}


class TrivialAsync(AsyncNode):
    def get_parameters(self) -> dict[str, NodeParameter]:
        return {"x": NodeParameter(default=0)}

    async def async_run(self, x: Any = 0) -> dict[str, Any]:
        return {"result": x}


def _source() -> int:
    return 1


def _leaf(value: int, i: int) -> dict[str, Any]:
    return {"result": value + i}


def _best(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _interleaved(fns: list[Callable[[], Any]], repeats: int) -> list[float]:
    """Best seconds of each of ``fns``, run in turn so that load changes hit all of them alike."""
    for fn in fns:
        fn()  # warm up
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t0)
    return best


def _workflow(name: str, node: Callable[[], Node], n: int) -> Any:
    from kailash.workflow import Workflow

    wf = Workflow(name)
    for i in range(n):
        wf.add_node(f"n{i}", node())
    return wf


def _fan(n: int) -> Any:
    from kailash.workflow import Workflow

    wf = Workflow("fan")
    wf.add_node("src", Trivial(x=1))
    for i in range(n):
        wf.add_node(f"leaf{i}", Trivial())
        wf.connect("src", f"leaf{i}", mapping={"result": "x"})
    return wf


def measure() -> list[dict[str, Any]]:
    from kailash.runtime import LocalRuntime, ParallelRuntime

    rows: list[dict[str, Any]] = []
    local, parallel = LocalRuntime(), ParallelRuntime(max_concurrency=100)

    naps = _workflow("naps", Nap, 20)
    wall = _best(lambda: parallel.execute_sync(naps), 5)
    rows.append({"what": "20 async nodes x 50 ms, ParallelRuntime", "value": wall * 1e3, "unit": "ms wall",
                 "target": "<= 80 ms", "ok": wall <= 0.080})
    wall = _best(lambda: local.execute(naps), 1)
    rows.append({"what": "20 async nodes x 50 ms, LocalRuntime", "value": wall * 1e3, "unit": "ms wall",
                 "target": "(sequential)", "ok": None})

    trivial, trivial_async = _workflow("trivial", Trivial, 100), _workflow("trivial-async", TrivialAsync, 100)
    for label, runtime, wf in (("LocalRuntime, sync nodes", local.execute, trivial),
                               ("ParallelRuntime, sync nodes (thread pool)", parallel.execute_sync, trivial),
                               ("ParallelRuntime, async nodes (event loop)", parallel.execute_sync, trivial_async)):
        wall = _best(lambda runtime=runtime, wf=wf: runtime(wf), 20)
        rows.append({"what": f"100 independent trivial nodes, {label}", "value": wall / 100 * 1e6,
                     "unit": "µs/node", "target": "reported", "ok": None})
    parallel.close()
    rows.extend(_dask_rows())
    return rows


def _dask_rows() -> list[dict[str, Any]]:
    try:
        import dask
        import distributed  # noqa: F401
    except ImportError:
        return [{"what": "DaskRuntime", "value": float("nan"), "unit": "", "target": "dask not installed",
                 "ok": None}]
    from kailash.runtime import DaskRuntime

    n = 100
    with DaskRuntime() as runtime:
        client = runtime.client
        fan = _fan(n)

        def direct() -> Any:
            src = dask.delayed(_source, pure=False)()
            leaves = [dask.delayed(_leaf, pure=False)(src, i) for i in range(n)]
            return client.gather(client.compute(leaves))

        def submitted() -> Any:
            src = client.submit(_source, pure=False)
            return client.gather([client.submit(_leaf, src, i, pure=False) for i in range(n)])

        ours, theirs, raw = _interleaved([lambda: runtime.execute(fan), direct, submitted], 15)
    ratio = ours / theirs - 1
    return [
        {"what": f"{n}-node fan on 2 Dask workers, bare client.submit", "value": raw / (n + 1) * 1e3,
         "unit": "ms/task", "target": "(floor)", "ok": None},
        {"what": f"{n}-node fan on 2 Dask workers, dask.delayed", "value": theirs / (n + 1) * 1e3,
         "unit": "ms/task", "target": "(baseline)", "ok": None},
        {"what": f"{n}-node fan on 2 Dask workers, DaskRuntime", "value": ours / (n + 1) * 1e3,
         "unit": "ms/task", "target": "< +20% vs dask.delayed", "ok": ratio < 0.20},
        {"what": "DaskRuntime overhead vs dask.delayed", "value": ratio * 100, "unit": "%",
         "target": "< 20%", "ok": ratio < 0.20},
    ]


def format_table(rows: list[dict[str, Any]]) -> str:
    width = max(len(r["what"]) for r in rows)
    lines = [f"{'measurement':<{width}}  {'value':>10}  {'unit':<8}  target"]
    for r in rows:
        mark = "" if r["ok"] is None else ("  PASS" if r["ok"] else "  FAIL")
        lines.append(f"{r['what']:<{width}}  {r['value']:>10.2f}  {r['unit']:<8}  {r['target']}{mark}")
    return "\n".join(lines)


def main() -> int:
    with tempfile.TemporaryDirectory() as home:
        old = os.environ.get("KAILASH_HOME")
        os.environ["KAILASH_HOME"] = home
        try:
            rows = measure()
        finally:
            if old is None:
                os.environ.pop("KAILASH_HOME", None)
            else:
                os.environ["KAILASH_HOME"] = old
    print("runtimes (issue 3): run recording ON, SQLite store in a temp KAILASH_HOME")
    print(format_table(rows))
    return 0 if all(r["ok"] is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
