"""Sandbox benchmarks: warm call latency, start-up costs, timeout enforcement.

Run: ``python bench/security.py``. Targets (issue 5): a warm sandboxed call of
``result = sum(range(1000))`` <= 1 ms; an infinite loop with ``execution_timeout=1.0``
stopped within 1.5 s. Issue 11: a warm call stays <= 250 us at any number of code nodes
(10, 100, 1,000 sandboxed nodes in one workflow, each keeping its ``self`` state) with a
bounded number of worker processes.

Before issue 11 (one worker per node, pool capped at 32 workers), on the 2-core dev box:
10 nodes 188 us, 100 nodes 11,597 us, 1,000 nodes 15,106 us per warm call (every call
past the 32nd node evicted and re-forked a worker).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
import uuid

from kailash.errors import NodeTimeoutError
from kailash.nodes.code.python import PythonCodeNode
from kailash.security import SecurityConfig
from kailash.security.sandbox import run_sandboxed, sandbox_info, shutdown_sandboxes
from kailash.security.sandbox.pool import worker_processes

CODE = "result = sum(range(1000))"
WARM_CALLS = 2000


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:9.3f} ms"


def bench_isolation(isolation: str) -> list[tuple[str, str, str]]:
    rows = []
    config = SecurityConfig(execution_timeout=30.0, memory_limit=256 * 1024 * 1024, isolation=isolation)
    t = time.perf_counter()
    info = sandbox_info(config)  # starts the template
    rows.append((f"[{info['isolation']}] template start (once per policy)", _ms(time.perf_counter() - t), ""))
    key = f"bench-{uuid.uuid4().hex}"
    t = time.perf_counter()
    assert run_sandboxed(key, CODE, [], {}, config, "bench") == 499500
    rows.append((f"[{info['isolation']}] first call of a new node (fork + compile)", _ms(time.perf_counter() - t), ""))
    samples = []
    for _ in range(WARM_CALLS):
        t = time.perf_counter()
        run_sandboxed(key, CODE, [], {}, config, "bench")
        samples.append(time.perf_counter() - t)
    samples.sort()
    median = statistics.median(samples)
    rows.append((f"[{info['isolation']}] warm call, median of {WARM_CALLS}", _ms(median),
                 "PASS (<= 1 ms)" if median <= 0.001 else "FAIL (> 1 ms)"))
    rows.append((f"[{info['isolation']}] warm call, p99", _ms(samples[int(len(samples) * 0.99)]), ""))
    loop_cfg = SecurityConfig(execution_timeout=1.0, isolation=isolation)
    loop_key = f"bench-loop-{uuid.uuid4().hex}"
    run_sandboxed(loop_key, CODE, [], {}, loop_cfg, "loop")  # the node's worker exists, as in a real workflow
    t = time.perf_counter()
    try:
        run_sandboxed(loop_key, "while True:\n    pass", [], {}, loop_cfg, "loop")
    except NodeTimeoutError:
        pass
    stopped = time.perf_counter() - t
    rows.append((f"[{info['isolation']}] infinite loop, execution_timeout=1.0", f"{stopped:9.3f} s ",
                 "PASS (<= 1.5 s)" if stopped <= 1.5 else "FAIL (> 1.5 s)"))
    t = time.perf_counter()
    run_sandboxed(key, CODE, [], {}, config, "bench")
    rows.append((f"[{info['isolation']}] call right after a timeout elsewhere", _ms(time.perf_counter() - t), ""))
    return rows


STATEFUL = "self.n = getattr(self, 'n', 0) + 1\nresult = self.n"


def _descendants() -> int:
    """Processes below this one (templates, bubblewrap and workers)."""
    import os

    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    count, todo = 0, [os.getpid()]
    while todo:
        for child in children.get(todo.pop(), []):
            count += 1
            todo.append(child)
    return count


def bench_many_nodes(isolation: str) -> list[tuple[str, str, str]]:
    """Warm calls spread over N nodes of one policy, each node keeping its own ``self`` state."""
    rows = []
    shutdown_sandboxes()
    config = SecurityConfig(execution_timeout=30.0, memory_limit=256 * 1024 * 1024, isolation=isolation)
    mode = sandbox_info(config)["isolation"]
    for n in (10, 100, 1000):
        keys = [f"bench-many-{uuid.uuid4().hex}" for _ in range(n)]
        for key in keys:
            run_sandboxed(key, STATEFUL, [], {}, config, "bench")
        rounds = max(3, 3000 // n)
        samples = []
        for r in range(rounds):
            for key in keys:
                t = time.perf_counter()
                value = run_sandboxed(key, STATEFUL, [], {}, config, "bench")
                samples.append(time.perf_counter() - t)
            assert value == r + 2, "a node lost its self state"
        samples.sort()
        median = statistics.median(samples)
        rows.append((f"[{mode}] {n:>4} nodes: warm call, median of {len(samples)}", f"{median * 1e6:9.1f} us ",
                     ("PASS" if median <= 0.00025 else "FAIL") + f" (<= 250 us); p90 {samples[int(len(samples) * .9)] * 1e6:.0f} us"))
        rows.append((f"[{mode}] {n:>4} nodes: worker processes (all sandbox processes)",
                     f"{worker_processes():>9} ({_descendants()})", "bounded, whatever the node count"))
        shutdown_sandboxes()
    return rows


def bench_baselines() -> list[tuple[str, str, str]]:
    rows = []
    node = PythonCodeNode(code=CODE)
    node.execute()
    samples = []
    for _ in range(WARM_CALLS):
        t = time.perf_counter()
        node.execute()
        samples.append(time.perf_counter() - t)
    rows.append(("in-process PythonCodeNode.execute, median", _ms(statistics.median(samples)), "no isolation"))
    samples = []
    for _ in range(10):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-I", "-c", CODE], check=True)
        samples.append(time.perf_counter() - t)
    rows.append(("fresh interpreter per call, median of 10", _ms(statistics.median(samples)), "for comparison"))
    return rows


def main() -> None:
    rows = bench_baselines()
    for isolation in ("auto", "process"):
        rows += bench_isolation(isolation)
    for isolation in ("auto", "process"):
        rows += bench_many_nodes(isolation)
    shutdown_sandboxes()
    width = max(len(r[0]) for r in rows)
    print(f"{'measurement':<{width}}  {'value':>12}  target")
    print("-" * (width + 32))
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>12}  {note}")


if __name__ == "__main__":
    main()
