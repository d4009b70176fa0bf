"""Benchmark of stream runs (issue 14): events per second through source → PythonCodeNode → sink.

One run of a three-node workflow (``EventStreamNode`` → ``PythonCodeNode`` computing
from the event → a sink ``PythonCodeNode`` writing one line per event to an open file)
consumes a websocket stream of ``EVENTS`` events, beside the floor: a plain
``websockets`` client loop in the same process doing the same work (parse the JSON,
compute, write the line). Target: the stream run reaches at least half the plain
loop's rate. Per-event latency (event read → downstream done and acknowledged) is the
stream run's own p50/p99. Windows: source → ``WindowNode`` → sink, a count window
(no timer) beside a one-second time window (asked when it is due after each event, a
loop timer for quiet streams): the time window's per-event cost. The websocket server
runs in a separate process. Best of ``REPEATS``. Run: ``python bench/streams.py``.
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

EVENTS = 20_000
REPEATS = 3

async def _plain(url: str, out: Any) -> float:
    """Events per second of a bare websockets client doing the same work."""
    from websockets.asyncio.client import connect

    n = 0
    t0 = time.perf_counter()
    async with connect(url) as ws:
        async for message in ws:
            event = json.loads(message)
            data = event["data"]
            out.write(f"{data['value'] * 2}\n")
            n += 1
    assert n == EVENTS, n
    return n / (time.perf_counter() - t0)


def _workflow(url: str) -> Any:
    from kailash.nodes.code.python import PythonCodeNode
    from kailash.nodes.data.streaming import EventStreamNode
    from kailash.workflow import Workflow

    wf = Workflow("bench-stream")
    wf.add_node("source", EventStreamNode(stream_url=url))
    wf.add_node("process", PythonCodeNode(code="result = data['value'] * 2"))
    wf.add_node("sink", PythonCodeNode(code="out.write(f'{value}\\n'); result = None"))
    wf.connect("source", "process")
    wf.connect("process", "sink", mapping={"result": "value"})
    return wf


def _windowed(url: str, **window: Any) -> Any:
    from kailash.nodes.code.python import PythonCodeNode
    from kailash.nodes.data.streaming import EventStreamNode
    from kailash.nodes.data.windows import WindowNode
    from kailash.workflow import Workflow

    wf = Workflow("bench-windows")
    wf.add_node("source", EventStreamNode(stream_url=url))
    wf.add_node("window", WindowNode(field="value", aggregates=["count", "sum"], **window))
    wf.add_node("sink", PythonCodeNode(code="out.write(f'{value}\\n'); result = None"))
    wf.connect("source", "window")
    wf.connect("window", "sink", mapping={"sum": "value"})
    return wf


def _stream(runtime: Any, wf: Any, out: Any) -> dict[str, Any]:
    if hasattr(runtime, "execute_sync"):
        results, _ = runtime.execute_sync(wf, parameters={"sink": {"out": out}})
    else:
        results, _ = runtime.execute(wf, parameters={"sink": {"out": out}})
    summary: dict[str, Any] = results["source"]
    assert summary["events"] == EVENTS, summary
    return summary


def main() -> int:
    """Print the stream benchmark table; return 1 if the target is missed."""
    from kailash.runtime import LocalRuntime, ParallelRuntime

    with tempfile.TemporaryDirectory(prefix="kailash-bench-") as home:
        os.environ["KAILASH_HOME"] = home
        with (served("start_ws_server", "ws://") as url,
              open(os.path.join(home, "sink.txt"), "w", encoding="utf-8") as sink):
            stream_url = f"{url}/events?count={EVENTS}"
            wf = _workflow(stream_url)
            _stream(LocalRuntime(store=None), wf, sink)  # warm: imports, compiled code
            parallel_rt = ParallelRuntime()
            plain, local, par = 0.0, None, None
            by_count, by_time = _windowed(stream_url, size=1000), _windowed(stream_url, duration=1.0)
            counted = timed = 0.0
            try:
                for _ in range(REPEATS):  # rounds alternate the paths: a burst of load on the shared machine
                    plain = max(plain, asyncio.run(_plain(stream_url, sink)))  # hits all of them alike
                    one = _stream(LocalRuntime(), wf, sink)
                    local = one if local is None or one["events_per_s"] > local["events_per_s"] else local
                    one = _stream(parallel_rt, wf, sink)
                    par = one if par is None or one["events_per_s"] > par["events_per_s"] else par
                    counted = max(counted, _stream(LocalRuntime(), by_count, sink)["events_per_s"])
                    timed = max(timed, _stream(LocalRuntime(), by_time, sink)["events_per_s"])
            finally:
                parallel_rt.close()
            assert local is not None and par is not None
    ratio = local["events_per_s"] / plain
    rows = [
        ("websocket → PythonCodeNode → sink, LocalRuntime", f"{local['events_per_s']:,.0f} events/s",
         f"{plain:,.0f} events/s (plain websockets loop)", f"{ratio:.2f}x of plain (>= 0.5x)", ratio >= 0.5),
        ("  per-event latency, LocalRuntime", f"p50 {local['latency_p50_ms']:.3f} ms, p99 {local['latency_p99_ms']:.3f} ms",
         "", "reported", None),
        ("websocket → PythonCodeNode → sink, ParallelRuntime", f"{par['events_per_s']:,.0f} events/s",
         f"{plain:,.0f} events/s (plain websockets loop)", f"{par['events_per_s'] / plain:.2f}x of plain", None),
        ("  per-event latency, ParallelRuntime", f"p50 {par['latency_p50_ms']:.3f} ms, p99 {par['latency_p99_ms']:.3f} ms",
         "", "reported", None),
        ("websocket → WindowNode(duration=1) → sink, LocalRuntime", f"{timed:,.0f} events/s",
         f"{counted:,.0f} events/s (WindowNode(size=1000), no timer)",
         f"{(1 / timed - 1 / counted) * 1e6:+.2f} µs/event", None),
    ]
    header = ("what", "kailash", "floor", "target")
    widths = [max(len(str(r[i])) for r in [*rows, header]) for i in range(4)]
    print(f"stream runs (issue 14): {EVENTS:,} events from a websocket server in a separate process, best of {REPEATS}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + "  ok")
    missed = False
    for row in rows:
        ok = row[4]
        mark = "" if ok is None else ("yes" if ok else "NO")
        missed = missed or ok is False
        print("  ".join(str(c).ljust(w) for c, w in zip(row[:4], widths, strict=True)) + f"  {mark}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
