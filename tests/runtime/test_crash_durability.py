"""Durable runs under real faults: a child process running a workflow is killed with SIGKILL.

For every kill point (chosen by a seeded random generator, some of them inside a log
commit): every node the store records as completed really ran (the side-effect file
shows it), the run reads ``interrupted``, and resuming it gives the results of an
uninterrupted run without running the recorded nodes again.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from kailash.runtime import LocalRuntime
from kailash.runtime.store import SQLiteRunStore

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from crash_nodes import NODES, PeekNode, SideEffectNode, crash_workflow, expected_results  # noqa: E402

PAUSE = 0.012  # per node: a run takes ~0.12 s plus the writes
KILLS = 32


def _env(side: Path) -> dict[str, str]:
    env = dict(os.environ, KAILASH_CRASH_FILE=str(side), KAILASH_CRASH_PAUSE=str(PAUSE))
    root = str(HERE.parent.parent)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _lines(side: Path) -> Counter[str]:
    return Counter(f"n{line}" for line in side.read_text().split()) if side.exists() else Counter()


def _kill_one(tmp: Path, durability: str, delay: float | None, commit: int) -> tuple[Path, Path, int]:
    store, side = tmp / "runs.db", tmp / "side.txt"
    args = [sys.executable, str(HERE / "crash_nodes.py"), str(store), durability] + ([str(commit)] if commit else [])
    child = subprocess.Popen(args, stdout=subprocess.PIPE, env=_env(side), text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "START"
        if delay is not None:
            time.sleep(delay)
            child.send_signal(signal.SIGKILL)
        code = child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return store, side, code


def _check_and_resume(store_path: Path, side: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    """Check the killed run's record against the side effects, resume it; return how many nodes it had done."""
    store = SQLiteRunStore(store_path)
    try:
        runs = store.list_runs()
        before = _lines(side)
        if not runs:  # killed before the first write reached the store (within the flush interval)
            assert sum(before.values()) <= 1, f"no record, yet nodes ran: {before}"
            return -1
        assert len(runs) == 1
        run = runs[0]
        if run.status == "completed":  # killed after the run ended (while the process exited)
            assert before == Counter(f"n{i}" for i in range(NODES))
            return NODES
        assert run.status == "interrupted", run
        assert [r.run_id for r in store.list_runs(status="interrupted")] == [run.run_id]
        assert store.list_runs(status="running") == []
        done = [n.node_id for n in run.nodes if n.status == "completed"]
        for node_id in done:  # recorded as completed => really finished
            assert before[node_id] == 1, (node_id, before)
        expected = expected_results()
        for node_id in done:
            assert run.outputs[node_id] == expected[node_id]
        monkeypatch.setenv("KAILASH_CRASH_FILE", str(side))
        monkeypatch.setenv("KAILASH_CRASH_PAUSE", "0")
        results, new_id = LocalRuntime(store=store).resume(run.run_id, crash_workflow())
        assert dict(results) == expected
        after = _lines(side)
        for i in range(NODES):
            node_id = f"n{i}"
            if node_id in done:
                assert after[node_id] == 1, f"{node_id} was recorded as done but ran again"
            else:  # at-least-once: it may have run before the kill without being recorded
                assert after[node_id] == before[node_id] + 1
        assert store.get_run(new_id).parent_run_id == run.run_id
        return len(done)
    finally:
        store.close()


def test_sigkill_at_random_points_loses_no_recorded_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(1313)
    seen: list[int] = []
    missed: list[tuple[str, int]] = []
    attempts = 0
    while len(seen) < KILLS:
        attempts += 1
        assert attempts <= 2 * KILLS, f"too many kills missed the run: {missed}"
        tmp = tmp_path / f"k{attempts}"
        tmp.mkdir()
        if attempts % 4 == 0:  # inside a log commit: rows handed to SQLite, no COMMIT
            store, side, code = _kill_one(tmp, "default", None, rng.randint(1, 6))
        else:
            store, side, code = _kill_one(tmp, "default", rng.uniform(0.0, NODES * PAUSE * 1.1), 0)
        if code == 0:  # finished before the kill: nothing to check here
            missed.append(("finished", attempts))
            continue
        assert code == -signal.SIGKILL
        done = _check_and_resume(store, side, monkeypatch)
        if 0 <= done < NODES:
            seen.append(done)
        else:
            missed.append(("no record" if done < 0 else "completed", attempts))
    assert len(set(seen)) >= 4, f"kill points did not spread over the run: {seen}"


def test_strict_durability_records_every_finished_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Strict: each completion is committed before the next node starts, so at most the
    node running at the kill is unrecorded (side effects exceed the record by at most one)."""
    rng = random.Random(7)
    checked = 0
    for k in range(6):
        tmp = tmp_path / f"s{k}"
        tmp.mkdir()
        store, side, code = _kill_one(tmp, "strict", rng.uniform(0.03, NODES * PAUSE), 0)
        if code == 0:
            continue
        ran = sum(_lines(side).values())
        done = _check_and_resume(store, side, monkeypatch)
        assert done >= 0, "strict: the running row is committed before the first node starts"
        assert ran - done <= 1, f"strict: {ran} nodes ran but only {done} were recorded"
        checked += 1
    assert checked >= 3


def test_workflow_metadata_sets_durability(tmp_path: Path) -> None:
    from kailash.runtime.engine import RuntimeDoor

    door = RuntimeDoor()
    door.store = SQLiteRunStore(tmp_path / "runs.db")
    recorder = door._recorder(crash_workflow("strict").compile(), "r" * 32, None)  # type: ignore[arg-type]
    assert recorder.strict
    assert door.get_run("r" * 32).status == "running"  # committed at start
    door.store.close()


def test_bad_durability_names_the_parameter() -> None:
    from kailash.errors import NodeConfigurationError

    with pytest.raises(NodeConfigurationError, match="durability must be 'default', 'strict' or 'off'"):
        LocalRuntime(store=None, durability="sometimes")
    with pytest.raises(NodeConfigurationError, match="workflow 'crash' metadata"):
        LocalRuntime(store=None).execute(crash_workflow("eventually"))


@pytest.mark.parametrize("kind", ["local", "parallel"])
@pytest.mark.parametrize("durability", ["default", "strict"])
def test_a_running_run_is_in_the_store_with_its_finished_nodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               kind: str, durability: str) -> None:
    """Read through another connection while the run runs: ``running``, owner this process,
    the finished node with its outputs, parameters redacted. ``default``: the writer thread
    put it there within its interval; ``strict``: it was committed before the node started."""
    from kailash import Workflow
    from kailash.runtime import ParallelRuntime
    from kailash.security.secrets import Secret

    monkeypatch.setenv("KAILASH_CRASH_FILE", str(tmp_path / "side.txt"))
    monkeypatch.setenv("KAILASH_CRASH_PAUSE", "0")
    path = tmp_path / "runs.db"
    wf = Workflow("peek")
    wf.add_node("first", SideEffectNode(), i=3)
    wf.add_node("peek", PeekNode(), path=str(path), pause=0.1 if durability == "default" else 0.0)
    wf.connect("first", "peek", mapping={"result": "data"})
    params = {"peek": {"token": Secret("s3cr3t-value-42", env="PEEK_TOKEN")}}
    if kind == "local":
        runtime: Any = LocalRuntime(store=path, durability=durability)
        results, run_id = runtime.execute(wf, params)
    else:
        runtime = ParallelRuntime(store=path, durability=durability)
        results, run_id = runtime.execute_sync(wf, params)
    [seen] = results["peek"]["seen"]
    assert seen["run_id"] == run_id and seen["status"] == "running"
    assert seen["extra"]["owner"]["pid"] == os.getpid()
    assert [n["node_id"] for n in seen["nodes"]] == ["first"]
    assert seen["outputs"] == {"first": {"result": 3, "trail": [3, "n3"]}}
    assert "s3cr3t-value-42" not in repr(seen)
    assert seen["parameters"]["peek"]["token"] == "${PEEK_TOKEN}"
    assert runtime.get_run(run_id).status == "completed"  # (reading flushes the log)
    assert runtime.store._conn.execute("SELECT count(*) FROM run_nodes").fetchone()[0] == 0  # cleaned up


def test_a_cancelled_parallel_run_is_not_followed_forever(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from kailash.runtime import ParallelRuntime

    monkeypatch.setenv("KAILASH_CRASH_FILE", str(tmp_path / "side.txt"))
    monkeypatch.setenv("KAILASH_CRASH_PAUSE", "0.2")
    runtime = ParallelRuntime(store=tmp_path / "runs.db")

    async def cancel_it() -> None:
        task = asyncio.ensure_future(runtime.execute(crash_workflow()))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_it())
    assert runtime.store.run_log.active == {}
    [run] = runtime.list_runs()
    assert run.status == "running" and [n.node_id for n in run.nodes] == ["n0"]  # owner (us) alive


def test_a_killed_runs_record_keeps_the_agent_calls_made_before_the_kill(tmp_path: Path) -> None:
    """The model call of an agent node that finished is in the record of a run killed afterwards."""
    store_path, side = tmp_path / "runs.db", tmp_path / "side.txt"
    env = _env(side) | {"KAILASH_CRASH_PAUSE": "0.1", "KAILASH_CRASH_AGENT": "1"}
    child = subprocess.Popen([sys.executable, str(HERE / "crash_nodes.py"), str(store_path), "default"],
                             stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "START"
        deadline = time.monotonic() + 20
        while sum(_lines(side).values()) < 3:  # ask, n0, n1, n2 done; n3 running
            assert time.monotonic() < deadline, "the child never got to n2"
            time.sleep(0.01)
        time.sleep(0.05)  # past the writer's interval (10 ms): what finished is written
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    store = SQLiteRunStore(store_path)
    try:
        (run,) = store.list_runs()
        assert run.status == "interrupted"
        assert {"ask", "n0", "n1", "n2"} <= {n.node_id for n in run.nodes if n.status == "completed"}
        calls = run.calls
        assert [(c["event"], c["node_id"], c["provider"], c["ok"]) for c in calls] == [
            ("model_call", "ask", "offline", True)], calls
    finally:
        store.close()
