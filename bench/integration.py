"""Benchmark of the integration nodes (issue 4): parallel sources and HTTP node overhead.

* Three ``AsyncHTTPRequestNode`` sources, each answered after 300 ms, merged by an
  ``AsyncMergeNode`` under ``ParallelRuntime`` (target: < 0.45 s), beside
  ``LocalRuntime`` running them one after another.
* Requests per second through ``AsyncHTTPRequestNode`` (``async_execute``, 20 in flight)
  beside the bare ``httpx.AsyncClient`` doing the same requests, and the sync
  ``HTTPRequestNode`` beside a bare ``httpx.Client``. The client is CPU-bound, so the
  overhead (target < 15%) is judged on client CPU time per request, which a busy shared
  machine disturbs far less than wall-clock rates (both are printed).

The local test server (uvicorn, :mod:`tests.servers.http_app`) runs in a separate
process so that client and server do not share one interpreter. Timings are the best
of several repetitions. Run: ``python bench/integration.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._servers import served  # noqa: E402

__all__ = ["main"]

REQUESTS = 600
IN_FLIGHT = 20
REPEATS = 7

def parallel_sources(url: str) -> dict[str, float]:
    from kailash.nodes.api import AsyncHTTPRequestNode
    from kailash.nodes.logic.async_operations import AsyncMergeNode
    from kailash.runtime import LocalRuntime, ParallelRuntime
    from kailash.workflow import Workflow

    def build() -> Workflow:
        wf = Workflow("three_sources")
        for i in (1, 2, 3):
            wf.add_node(f"source{i}", AsyncHTTPRequestNode(config={"url": f"{url}/slow?delay=0.3&source={i}"}))
        wf.add_node("merger", AsyncMergeNode(config={"merge_strategy": "dict_merge", "wait_for_all": True,
                                                     "on_conflict": "last"}))  # each answer names its source
        for i in (1, 2, 3):
            wf.connect(f"source{i}", "merger")
        return wf

    wf = build()
    best_parallel = best_local = float("inf")
    for _ in range(REPEATS):
        t = time.perf_counter()
        asyncio.run(ParallelRuntime().execute(wf))
        best_parallel = min(best_parallel, time.perf_counter() - t)
        t = time.perf_counter()
        LocalRuntime().execute(wf)
        best_local = min(best_local, time.perf_counter() - t)
    return {"parallel": best_parallel, "local": best_local}


class Rate:
    """Best wall-clock rate and least client CPU per request over the repetitions."""

    def __init__(self) -> None:
        self.per_s = 0.0
        self.cpu_us = float("inf")

    def add(self, n: int, wall: float, cpu: float) -> None:
        self.per_s = max(self.per_s, n / wall)
        self.cpu_us = min(self.cpu_us, cpu / n * 1e6)


async def _async_rates(url: str) -> tuple[Rate, Rate]:
    import httpx

    from kailash.nodes.api import AsyncHTTPRequestNode

    target = f"{url}/echo"
    node = AsyncHTTPRequestNode(url=target)

    async def run(call: Any, into: Rate | None) -> None:
        sem = asyncio.Semaphore(IN_FLIGHT)

        async def one() -> None:
            async with sem:
                await call()

        t, c = time.perf_counter(), time.process_time()
        await asyncio.gather(*(one() for _ in range(REQUESTS)))
        if into is not None:
            into.add(REQUESTS, time.perf_counter() - t, time.process_time() - c)

    bare_rate, node_rate = Rate(), Rate()
    async with httpx.AsyncClient() as client:
        async def bare() -> None:
            r = await client.get(target)
            r.json()

        await run(bare, None)  # warm both pools
        await run(node.async_execute, None)
        for _ in range(REPEATS):  # interleaved, so load changes hit both alike
            await run(bare, bare_rate)
            await run(node.async_execute, node_rate)
    return bare_rate, node_rate


def _sync_rates(url: str) -> tuple[Rate, Rate]:
    import httpx

    from kailash.nodes.api import HTTPRequestNode

    target = f"{url}/echo"
    node = HTTPRequestNode(url=target)
    n = REQUESTS // 2

    def run(call: Any, into: Rate | None) -> None:
        t, c = time.perf_counter(), time.process_time()
        for _ in range(n):
            call()
        if into is not None:
            into.add(n, time.perf_counter() - t, time.process_time() - c)

    bare_rate, node_rate = Rate(), Rate()
    with httpx.Client() as client:
        def bare() -> None:
            client.get(target).json()

        run(bare, None)
        run(node.execute, None)
        for _ in range(REPEATS):
            run(bare, bare_rate)
            run(node.execute, node_rate)
    return bare_rate, node_rate


async def _in_memory_cost() -> tuple[float, float]:
    """Client CPU µs per request with httpx's in-memory transport: the node's own cost, no network."""
    import httpx

    from kailash.nodes.api import AsyncHTTPRequestNode
    from kailash.nodes.api.http import _close_with_loop

    def handler(request: Any) -> Any:  # a stream, as from the network: the node reads it under its cap
        body = json.dumps({"ok": True, "path": request.url.path}).encode()
        return httpx.Response(200, headers={"content-type": "application/json"}, stream=httpx.ByteStream(body))

    node = AsyncHTTPRequestNode(url="http://bench.local/echo")
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    clients = node._http()  # hand the node the same in-memory client the bare loop uses
    keeper = _close_with_loop(client)
    await keeper.__anext__()
    key = clients._key(node._base_plan("http://bench.local", {}))
    clients._async[asyncio.get_running_loop()] = {key: (client, keeper)}

    async def bare() -> None:
        (await client.get("http://bench.local/echo")).json()

    best = {"bare": float("inf"), "node": float("inf")}
    n = 2000
    for _ in range(REPEATS):
        for name, call in (("bare", bare), ("node", node.async_execute)):
            c = time.process_time()
            for _ in range(n):
                await call()
            best[name] = min(best[name], (time.process_time() - c) / n * 1e6)
    return best["bare"], best["node"]


def main() -> int:
    """Print the integration benchmark table; return 1 if a target is missed."""
    with tempfile.TemporaryDirectory(prefix="kailash-bench-") as home:
        os.environ["KAILASH_HOME"] = home
        with served("start_http_server", "http") as url:
            sources = parallel_sources(url)
            a_bare, a_node = asyncio.run(_async_rates(url))
            s_bare, s_node = _sync_rates(url)
            m_bare, m_node = asyncio.run(_in_memory_cost())
    a_over = (a_node.cpu_us / a_bare.cpu_us - 1) * 100
    s_over = (s_node.cpu_us / s_bare.cpu_us - 1) * 100
    rows = [
        ("3 sources x 300 ms, ParallelRuntime", f"{sources['parallel']:.3f} s",
         f"{sources['local']:.3f} s (LocalRuntime)", "< 0.45 s", sources["parallel"] < 0.45),
        (f"AsyncHTTPRequestNode, {IN_FLIGHT} in flight", f"{a_node.per_s:,.0f} req/s, {a_node.cpu_us:,.0f} µs CPU/req",
         f"{a_bare.per_s:,.0f} req/s, {a_bare.cpu_us:,.0f} µs CPU/req (httpx.AsyncClient)",
         f"overhead {a_over:+.1f}% (< 15%)", a_over < 15),
        ("HTTPRequestNode, sequential", f"{s_node.per_s:,.0f} req/s, {s_node.cpu_us:,.0f} µs CPU/req",
         f"{s_bare.per_s:,.0f} req/s, {s_bare.cpu_us:,.0f} µs CPU/req (httpx.Client)", f"overhead {s_over:+.1f}%", None),
        ("AsyncHTTPRequestNode, in-memory transport", f"{m_node:,.0f} µs CPU/req",
         f"{m_bare:,.0f} µs CPU/req (httpx.AsyncClient)", f"node's own cost {m_node - m_bare:+.0f} µs/req", None),
    ]
    widths = [max(len(str(r[i])) for r in rows + [("what", "kailash", "baseline", "target")]) for i in range(4)]
    header = ("what", "kailash", "baseline", "target")
    print("integration nodes (issue 4): local uvicorn server in a separate process, best of", REPEATS)
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + "  ok")
    for r in rows:
        ok = "-" if r[4] is None else ("yes" if r[4] else "NO")
        print("  ".join(str(c).ljust(w) for c, w in zip(r[:4], widths, strict=True)) + f"  {ok}")
    return 0 if all(r[4] is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
