"""Benchmark of the core engine (issue 2): what the engine costs per node and per run.

Every measurement is printed beside a *floor*: a minimal dict-based interpreter run in
the same process — a list of ``(node id, function, upstream id)`` walked in order, each
function called with its upstream's value and returning a one-key dict. Run recording
is ON (the default SQLite store, in a temporary ``KAILASH_HOME``). Targets from issue 2
are printed beside the measurements with pass/fail.

The durability rows (issue 13) run each mode in turn, round by round, in one process;
their 500-chain figures include flushing the run's record.

Run: ``python bench/core.py`` (or ``python bench/run.py`` for every bench module).
Timings are the best of several repetitions, so a busy machine shows up as noise
rather than as a slower engine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

__all__ = ["main", "measure"]

REPEATS = 7
CHAIN_RUNS = 5  # 500-chain runs (each flushed) per mode and round in the durability rows
ISSUE_FLOOR_US = 0.4  # the floor issue 2 measured on its machine, for reference


def _best(fn: Callable[[], Any], inner: int, repeats: int = REPEATS, budget: float = 1.5) -> float:
    """Best seconds per call of ``fn`` over batches of ``inner`` calls.

    At least ``repeats`` batches, more (up to 60) while the time ``budget`` lasts: on a
    shared machine the minimum over many short batches is the stable number.
    """
    fn()  # warm up (compiles plans and code once)
    best = float("inf")
    start = time.perf_counter()
    for k in range(60):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        best = min(best, (time.perf_counter() - t0) / inner)
        if k + 1 >= repeats and time.perf_counter() - start > budget:
            break
    return best


# -- the floor ------------------------------------------------------------------------------
def _inc(value: Any) -> dict[str, Any]:
    return {"result": value + 1}


def floor_chain(n: int) -> Callable[[], dict[str, Any]]:
    steps = [("n0", _inc, None)] + [(f"n{i}", _inc, f"n{i - 1}") for i in range(1, n)]

    def run() -> dict[str, Any]:
        values: dict[str, Any] = {}
        for node_id, fn, up in steps:
            values[node_id] = fn(values[up]["result"] if up is not None else 0)
        return values

    return run


def floor_fan(width: int) -> Callable[[], dict[str, Any]]:
    def gather(values: list[Any]) -> dict[str, Any]:
        return {"result": values}

    steps: list[tuple[str, Callable[[Any], dict[str, Any]], Any]] = [("src", _inc, None)]
    steps += [(f"m{i}", _inc, "src") for i in range(width)]
    steps.append(("sink", gather, tuple(f"m{i}" for i in range(width))))

    def run() -> dict[str, Any]:
        values: dict[str, Any] = {}
        for node_id, fn, up in steps:
            if up is None:
                arg: Any = 0
            elif isinstance(up, tuple):
                arg = [values[u]["result"] for u in up]
            else:
                arg = values[up]["result"]
            values[node_id] = fn(arg)
        return values

    return run


# -- kailash workflows ------------------------------------------------------------------------
def _inc_node_class() -> type:
    from kailash.nodes.base import Node, NodeParameter

    class BenchIncNode(Node):
        """Adds one to its input (the work of one floor function)."""

        def get_parameters(self) -> dict[str, NodeParameter]:
            return {"data": NodeParameter(type=int, default=0, description="a number")}

        def run(self, data: int = 0) -> dict[str, Any]:
            return {"result": data + 1}

    return BenchIncNode


def kailash_chain(n: int, kind: str) -> Any:
    from kailash.nodes.code.python import PythonCodeNode
    from kailash.workflow import Workflow

    inc = _inc_node_class()
    wf = Workflow(f"chain-{kind}-{n}")
    for i in range(n):
        if kind == "custom":
            node = inc()
        else:  # the first node gets its input from config, the others from upstream
            node = PythonCodeNode(code="result = data + 1", **({"data": 0} if i == 0 else {}))
        wf.add_node(f"n{i}", node)
        if i:
            wf.connect(f"n{i - 1}", f"n{i}")
    return wf


def kailash_fan(width: int) -> Any:
    from kailash.nodes.logic.operations import MergeNode
    from kailash.workflow import Workflow

    inc = _inc_node_class()
    wf = Workflow(f"fan-{width}")
    wf.add_node("src", inc())
    wf.add_node("sink", MergeNode(merge_strategy="list"))
    for i in range(width):
        wf.add_node(f"m{i}", inc())
        wf.connect("src", f"m{i}")
        wf.connect(f"m{i}", "sink")
    return wf


# -- subprocess measurements ------------------------------------------------------------------
_IMPORT_SNIPPET = """
import time
t0 = time.perf_counter()
{stmt}
print(time.perf_counter() - t0)
"""

_RSS_SNIPPET = """
import resource, sys
sys.path.insert(0, {root!r})
from bench.core import kailash_chain, floor_chain
if {floor}:
    floor_chain(500)()
else:
    from kailash.runtime import LocalRuntime
    results, run_id = LocalRuntime().execute(kailash_chain(500, "custom"))
    assert results["n499"]["result"] == 500
# ru_maxrss survives exec on Linux (a child spawned by this big benchmark process would report
# at least the parent's size), so prefer VmHWM, the high-water mark of this process's own memory.
try:
    with open("/proc/self/status") as f:
        print(next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")) / 1024)
except (OSError, StopIteration):
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def _subprocess_value(code: str, env: dict[str, str]) -> float:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                         cwd=str(ROOT), check=True)
    return float(out.stdout.strip().splitlines()[-1])


def import_time(stmt: str, env: dict[str, str], tries: int = 7) -> float:
    return min(_subprocess_value(_IMPORT_SNIPPET.format(stmt=stmt), env) for _ in range(tries))


def peak_rss(floor: bool, env: dict[str, str]) -> float:
    return min(_subprocess_value(_RSS_SNIPPET.format(root=str(ROOT), floor=floor), env) for _ in range(3))


# -- the table --------------------------------------------------------------------------------
def measure() -> list[dict[str, Any]]:
    """Run every measurement; return rows ``{what, kailash, floor, unit, ratio, target, ok}``."""
    from kailash.runtime import LocalRuntime

    runtime = LocalRuntime()  # records every run in the default store (KAILASH_HOME)
    rows: list[dict[str, Any]] = []

    def row(what: str, value: float, floor: float | None, unit: str, target: str = "", ok: bool | None = None) -> None:
        # "× floor" is always how many times the floor's cost (higher = worse)
        if not floor:
            ratio = None
        elif unit == "workflows/s":
            ratio = floor / value
        else:
            ratio = value / floor
        rows.append({"what": what, "kailash": value, "floor": floor, "unit": unit, "ratio": ratio,
                     "target": target, "ok": ok})

    for kind, limit in (("custom", 10), ("code", 20)):
        label = "custom-node chain" if kind == "custom" else "PythonCodeNode chain"
        for n in (10, 100, 500):
            wf = kailash_chain(n, kind)
            last = f"n{n - 1}"
            res, _ = runtime.execute(wf)
            assert res[last]["result"] == n, res[last]
            inner = max(1, 500 // n)
            k = _best(lambda wf=wf: runtime.execute(wf), inner) / n * 1e6
            f = _best(floor_chain(n), inner * 10) / n * 1e6
            if n == 500:
                row(f"{label} of {n}", k, f, "µs/node", f"≤ {limit}× floor", k <= limit * f)
            else:
                row(f"{label} of {n}", k, f, "µs/node")

    fan = kailash_fan(100)
    res, _ = runtime.execute(fan)
    assert res["sink"]["merged_data"] == [2] * 100
    k = _best(lambda: runtime.execute(fan), 5) / 102 * 1e6
    f = _best(floor_fan(100), 50) / 102 * 1e6
    row("1→100→1 fan (MergeNode)", k, f, "µs/node")

    three = kailash_chain(3, "custom")

    def thousand_runs() -> None:
        for _ in range(1000):
            runtime.execute(three)
        runtime.store.flush()  # the batched writes belong to the cost of recording

    per = _best(thousand_runs, 1, repeats=5, budget=3.0) / 1000
    floor3 = _best(floor_chain(3), 1000)
    row("1,000 runs of a 3-node workflow", 1 / per, 1 / floor3, "workflows/s", "≥ 20,000/s", 1 / per >= 20000)

    measure_durability(floor3, row)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    imp = import_time("import kailash", env) * 1000
    row("import kailash", imp, None, "ms", "≤ 60 ms", imp <= 60)
    imp_all = import_time("import kailash; from kailash.workflow import Workflow; "
                          "from kailash.runtime import LocalRuntime", env) * 1000
    row("import kailash + Workflow + LocalRuntime", imp_all, None, "ms", "≤ 60 ms", imp_all <= 60)
    rss = peak_rss(False, env)
    rss_floor = peak_rss(True, env)
    row("peak RSS, 500-node chain run (VmHWM)", rss, rss_floor, "MiB", "≤ 25 MiB", rss <= 25)
    return rows


def measure_durability(floor3: float, row: Callable[..., None], rounds: int = 7) -> None:
    """Issue 13: 3-node workflows/s and the 500-node chain's µs/node per durability mode,
    same process, the modes taking turns round by round (best of ``rounds``) so that a busy
    machine weighs on every mode alike. ``recording off`` = ``store=None``.

    The recording modes write to a store of their own that starts empty (the rows above
    leave a number of runs in the default store that depends on the machine's speed); a
    last row measures ``default`` on a store already holding 100,000 runs. Each round's
    time includes flushing what it wrote; a round runs the 500-chain :data:`CHAIN_RUNS`
    times per mode (once for strict), each run flushed and timed on its own. The strict row's note is its per-node cost: the
    strict chain's µs/node minus recording off's (one fsync'd commit per node)."""
    from kailash.runtime import LocalRuntime

    three, chain = kailash_chain(3, "custom"), kailash_chain(500, "custom")
    f500 = _best(floor_chain(500), 20) / 500 * 1e6
    modes = ("recording off", "off", "default", "strict")
    home = Path(os.environ.get("KAILASH_HOME") or tempfile.gettempdir())
    db = home / f"durability-{os.getpid()}.db"
    runtimes = {m: LocalRuntime(store=None) if m == "recording off" else LocalRuntime(store=db, durability=m)
                for m in modes}
    best = {m: [float("inf"), float("inf")] for m in modes}  # seconds per run, µs per node
    for r in range(rounds):
        for mode, runtime in runtimes.items():
            strict = mode == "strict"
            if strict and r >= 2:  # an fsync per node: two rounds are enough
                continue
            best[mode][0] = min(best[mode][0], _per_run(runtime, three, 20 if strict else 1000))
            for _ in range(1 if strict else CHAIN_RUNS):  # a 500-chain run is short: a few per round
                t0 = time.perf_counter()
                runtime.execute(chain)
                if runtime.store is not None:
                    runtime.store.flush()
                best[mode][1] = min(best[mode][1], (time.perf_counter() - t0) / 500 * 1e6)
    base_wf, base_node = 1 / best["recording off"][0], best["recording off"][1]
    for mode in modes:
        wfs, node = 1 / best[mode][0], best[mode][1]
        label = f"durability={mode}" if mode != "recording off" else "recording off (store=None)"
        default = mode == "default"
        row(f"3-node wf/s, {label}", wfs, 1 / floor3, "workflows/s",
            ("≥ 50,000/s " if default else "") + f"({wfs / base_wf:.2f}× rec. off)", wfs >= 50000 if default else None)
        extra = f", {node - base_node:,.0f} µs/node to commit" if mode == "strict" else ""
        row(f"500-chain, {label}", node, f500, "µs/node",
            ("≤ 6× floor " if default else "") + f"({node / base_node:.2f}× rec. off{extra})",
            node <= 6 * f500 if default else None)
    big = _store_with_runs(home / f"durability-100k-{os.getpid()}.db", 100_000)
    runtime = LocalRuntime(store=big, durability="default")
    per = min(_per_run(runtime, three, 1000) for _ in range(rounds))
    row("3-node wf/s, default, store of 100k runs", 1 / per, 1 / floor3, "workflows/s",
        f"({1 / per / base_wf:.2f}× rec. off)")


def _per_run(runtime: Any, workflow: Any, runs: int) -> float:
    """Seconds per run of ``runs`` runs of ``workflow``, including flushing what they wrote."""
    t0 = time.perf_counter()
    for _ in range(runs):
        runtime.execute(workflow)
    if runtime.store is not None:
        runtime.store.flush()  # the writes belong to the cost of recording
    return (time.perf_counter() - t0) / runs


def _store_with_runs(path: Path, n: int) -> Any:
    """A SQLite store at ``path`` holding ``n`` finished 3-node runs (written directly: quick)."""
    from kailash.runtime.engine import new_run_id
    from kailash.runtime.runlog import pack_nodes
    from kailash.runtime.store import store_at

    store = store_at(path)
    now = time.time()
    nodes = pack_nodes([(f"n{i}", "completed", 1.0 + i, 1e-6, None) for i in range(3)], 1.0)
    rows = [(new_run_id(), "chain-custom-3", "completed", now - n + i, now - n + i + 1e-5, None, None, nodes,
             None, None, None, "local", None, None) for i in range(n)]
    with store._lock:
        store._conn.execute("BEGIN")
        store._conn.executemany("INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
        store._conn.execute("COMMIT")
        store._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # as a store that has been running a while
    return store


def format_table(rows: list[dict[str, Any]]) -> str:
    head = f"{'measurement':<42}{'kailash':>12}{'floor':>12}  {'unit':<12}{'× floor':>9}  target"
    lines = [head, "-" * len(head) + "-" * 14]
    for r in rows:
        floor = f"{r['floor']:>12.2f}" if r["floor"] is not None else f"{'-':>12}"
        ratio = f"{r['ratio']:>8.1f}×" if r["ratio"] is not None else f"{'':>9}"
        verdict = "" if r["ok"] is None else ("PASS" if r["ok"] else "FAIL")
        value = f"{r['kailash']:>12,.0f}" if r["unit"] == "workflows/s" else f"{r['kailash']:>12.2f}"
        if r["unit"] == "workflows/s" and r["floor"] is not None:
            floor = f"{r['floor']:>12,.0f}"
        lines.append(f"{r['what']:<42}{value}{floor}  {r['unit']:<12}{ratio}  {r['target']} {verdict}".rstrip())
    return "\n".join(lines)


def main() -> int:
    """Print the core benchmark table; return 1 if a target is missed."""
    with tempfile.TemporaryDirectory(prefix="kailash-bench-") as home:
        os.environ["KAILASH_HOME"] = home
        rows = measure()
        print("core engine (issue 2): run recording ON, SQLite store in a temp KAILASH_HOME")
        print(format_table(rows))
        chain = next(r for r in rows if r["what"] == "custom-node chain of 500")
        code = next(r for r in rows if r["what"] == "PythonCodeNode chain of 500")
        print(f"note: the floor measured here is {chain['floor']:.2f} µs/node; issue 2 quotes ~{ISSUE_FLOOR_US} µs. "
              f"Against {ISSUE_FLOOR_US} µs the chains of 500 cost {chain['kailash'] / ISSUE_FLOOR_US:.1f}× (custom) and "
              f"{code['kailash'] / ISSUE_FLOOR_US:.1f}× (PythonCodeNode).")
    return 0 if all(r["ok"] is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
