"""The durable run queue with real gateway processes and real faults (SIGKILL).

* Two gateways on one PostgreSQL: 200 async runs, one gateway SIGKILLed halfway. Every
  run completes exactly once; a node runs twice only in a run the other gateway took
  over after the lease expired, and only if it was not recorded finished (the record's
  ``extra.queue`` shows the attempt and the nodes reused).
* The SQLite default: runs queued, the gateway SIGKILLed, started again — all complete
  (the restarted gateway sees at once that the dead process owned them).
"""

from __future__ import annotations

import collections
import concurrent.futures
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
SERVER = Path(__file__).with_name("queue_gateway_server.py")
STEPS = ("a", "b", "c")


def _start(env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    root = str(Path(__file__).resolve().parents[2])
    full = {**os.environ, **env, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, str(SERVER)], env=full, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError(f"the gateway did not start: {line!r}")
    return proc, f"http://127.0.0.1:{int(line.split()[1])}"


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)


def _submit(url: str, token: str) -> str:
    reply = httpx.post(f"{url}/workflows/effects/execute?async=true", timeout=10,
                       json={"parameters": {s: {"token": token} for s in STEPS}})
    assert reply.status_code == 202, reply.text
    return str(reply.json()["run_id"])


def _effects(path: Path) -> list[tuple[str, str, int]]:
    if not path.exists():
        return []
    return [(t, s, int(p)) for t, s, p in (line.split() for line in path.read_text().splitlines())]


def _wait_lines(path: Path, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(_effects(path)) < n:
        assert time.monotonic() < deadline, f"only {len(_effects(path))} of {n} side effects"
        time.sleep(0.01)


def _check_exactly_once(effects: list[tuple[str, str, int]], records: dict[str, dict], tokens: dict[str, str],
                        killed_pid: int) -> int:
    """Every node of every run ran; a node ran twice only where the record says the run was taken over
    and did not reuse that node. Returns how many runs were taken over."""
    counts = collections.Counter((t, s) for t, s, _ in effects)
    taken_over = reused = 0
    for run_id, token in tokens.items():
        record = records[run_id]
        assert record["status"] == "completed", (run_id, record)
        queue = (record.get("extra") or {}).get("queue") or {}
        attempt = queue.get("attempt", 1)
        taken_over += attempt > 1
        reused += len(queue.get("reused", []))
        for step in STEPS:
            n = counts[(token, step)]
            assert n >= 1, f"run {run_id}: node {step} never ran"
            if n > 1:  # only a node in flight at the kill: the run was taken over and did not reuse it
                assert attempt > 1 and step not in queue.get("reused", []), (run_id, step, n, queue)
                assert n == 2, (run_id, step, n)
                assert {p for t, s, p in effects if (t, s) == (token, step)} >= {killed_pid}
            if step in queue.get("reused", []):
                assert n == 1, (run_id, step, n, queue)
            elif attempt > 1 and n == 1 and {p for t, s, p in effects if (t, s) == (token, step)} == {killed_pid}:
                # it ran only in the killed gateway and not again: the taking-over one reused its output
                raise AssertionError(f"run {run_id}: node {step} finished before the kill but is not in reused")
    return taken_over


def _records(url: str, run_ids: list[str], timeout: float) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    out: dict[str, dict] = {}
    with httpx.Client(base_url=url, timeout=10) as http:
        while True:
            for run_id in run_ids:
                if run_id not in out:
                    d = http.get(f"/runs/{run_id}").json()
                    if d.get("status") in ("completed", "failed"):  # "interrupted": until it is taken over
                        out[run_id] = d
            if len(out) == len(run_ids):
                return out
            assert time.monotonic() < deadline, f"{len(run_ids) - len(out)} run(s) never finished"
            time.sleep(0.2)


@pytest.fixture
def pg_schemas():
    psycopg = pytest.importorskip("psycopg")
    try:
        psycopg.connect(PG_URL, connect_timeout=3).close()
    except Exception as exc:
        pytest.skip(f"no PostgreSQL at {PG_URL}: {exc}")
    tag = uuid.uuid4().hex[:10]
    names = (f"kq_reg_{tag}", f"kq_def_{tag}")
    yield names
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        for name in names:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def test_two_gateways_on_postgres_one_killed_every_run_once(tmp_path, pg_schemas):
    effects = tmp_path / "effects.txt"
    env = {"KAILASH_DATABASE_URL": PG_URL, "QUEUE_TEST_REGISTRY": pg_schemas[0], "QUEUE_TEST_SCHEMA": pg_schemas[1],
           "QUEUE_TEST_EFFECTS": str(effects), "QUEUE_TEST_DELAY": "0.06", "QUEUE_TEST_SLOTS": "4",
           "KAILASH_QUEUE_LEASE": "2", "KAILASH_HOME": str(tmp_path / "home"),
           "QUEUE_TEST_GO": str(tmp_path / "go"),  # nodes wait until all 200 runs are queued
           "QUEUE_TEST_EXPIRE_DEAD": "0"}  # takeover by lease expiry alone, as across hosts
    one, url_one = _start(env)
    two, url_two = _start(env)
    try:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:  # half through each gateway
            ids = pool.map(lambda i: _submit(url_one if i % 2 else url_two, f"t{i:03d}"), range(200))
            tokens = {run_id: f"t{i:03d}" for i, run_id in enumerate(ids)}
        (tmp_path / "go").touch()
        _wait_lines(effects, 300, 60)  # about half of the 600 node executions
        os.kill(one.pid, signal.SIGKILL)
        one.wait(10)
        assert len(_effects(effects)) < 500  # killed midway, with runs in flight and runs still queued
        try:
            records = _records(url_two, list(tokens), 60)
        except AssertionError:
            psycopg = pytest.importorskip("psycopg")
            with psycopg.connect(PG_URL) as conn:
                rows = conn.execute(f'SELECT run_id, status, owner, attempts, lease_until, error FROM '
                                    f'"{pg_schemas[0]}".run_queue WHERE status <> %s', ("completed",)).fetchall()
            raise AssertionError(f"unfinished queue rows: {rows}; effects: {len(_effects(effects))}") from None
        taken_over = _check_exactly_once(_effects(effects), records, tokens, one.pid)
        assert taken_over >= 1  # the killed gateway was running some: the survivor took them over
        ran = collections.Counter(p for _, _, p in _effects(effects))
        assert set(ran) == {one.pid, two.pid}  # both gateways worked the queue
        psycopg = pytest.importorskip("psycopg")
        with psycopg.connect(PG_URL) as conn:
            states = dict(conn.execute(f'SELECT status, count(*) FROM "{pg_schemas[0]}".run_queue GROUP BY status')
                          .fetchall())
        assert states == {"completed": 200}
    finally:
        _stop(one)
        _stop(two)


def test_sqlite_gateway_killed_and_restarted_completes_every_run(tmp_path):
    effects = tmp_path / "effects.txt"
    env = {"KAILASH_HOME": str(tmp_path / "home"), "QUEUE_TEST_EFFECTS": str(effects), "QUEUE_TEST_DELAY": "0.1",
           "QUEUE_TEST_SLOTS": "2", "KAILASH_QUEUE_LEASE": "300"}  # no waiting for the lease: the owner is dead
    env.pop("KAILASH_DATABASE_URL", None)
    first, url = _start({**env, "KAILASH_DATABASE_URL": ""})
    try:
        started = time.monotonic()
        tokens = {_submit(url, f"s{i:02d}"): f"s{i:02d}" for i in range(24)}
        _wait_lines(effects, 15, 30)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        print(f"submitted and killed after {time.monotonic() - started:.2f} s")
        assert len({t for t, _, _ in _effects(effects)}) < 24  # some runs had not started: they were queued
        second, url = _start({**env, "KAILASH_DATABASE_URL": ""})
        try:
            records = _records(url, list(tokens), 30)
            assert _check_exactly_once(_effects(effects), records, tokens, first.pid) >= 1
        finally:
            _stop(second)
    finally:
        _stop(first)


def test_on_interrupted_mark_records_the_runs_of_a_dead_gateway_without_running_them_again(tmp_path):
    effects = tmp_path / "effects.txt"
    env = {"KAILASH_HOME": str(tmp_path / "home"), "QUEUE_TEST_EFFECTS": str(effects), "QUEUE_TEST_DELAY": "0.4",
           "QUEUE_TEST_SLOTS": "2", "KAILASH_QUEUE_LEASE": "300", "KAILASH_DATABASE_URL": ""}
    first, url = _start(env)
    try:
        tokens = {_submit(url, f"m{i}"): f"m{i}" for i in range(5)}
        _wait_lines(effects, 2, 30)  # both slots are in their first node
        time.sleep(0.1)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        at_kill = collections.Counter(t for t, _, _ in _effects(effects))
        second, url = _start({**env, "QUEUE_TEST_ON_INTERRUPTED": "mark", "QUEUE_TEST_DELAY": "0.01"})
        try:
            deadline = time.monotonic() + 30
            with httpx.Client(base_url=url, timeout=10) as http:
                while True:
                    runs = {r: http.get(f"/runs/{r}").json() for r in tokens}
                    settled = {r: d for r, d in runs.items() if d["status"] == "completed"
                               or (d["status"] == "interrupted" and "not resumed" in (d.get("error") or {}).get("message", ""))}
                    if len(settled) == len(tokens):
                        break
                    assert time.monotonic() < deadline, [d for r, d in runs.items() if r not in settled]
                    time.sleep(0.2)
        finally:
            _stop(second)
        after = collections.Counter(t for t, _, _ in _effects(effects))
        marked = [r for r, d in settled.items() if d["status"] == "interrupted"]
        assert len(marked) == 2 and {tokens[r] for r in marked} == set(at_kill)  # the two in flight at the kill
        for run_id in marked:
            assert after[tokens[run_id]] == at_kill[tokens[run_id]]  # not run again
            assert settled[run_id]["extra"]["queue"]["marked"] is True
        for run_id in set(tokens) - set(marked):  # the queued ones ran on the new gateway, once
            assert after[tokens[run_id]] == 3
    finally:
        _stop(first)


def test_dask_gateway_killed_its_runs_are_taken_over_and_resumed_locally(tmp_path, monkeypatch):
    """A gateway with ``dask_address`` runs queued runs on the Dask workers; killed, the gateway
    taking over resumes its runs on LocalRuntime in its own process (DaskRuntime cannot continue
    a run under its own id), and every run completes."""
    import logging

    distributed = pytest.importorskip("distributed")
    effects = tmp_path / "effects.txt"
    monkeypatch.setenv("QUEUE_TEST_EFFECTS", str(effects))  # the worker processes run the nodes: they need it
    monkeypatch.setenv("QUEUE_TEST_DELAY", "0.3")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=True, host="127.0.0.1",
                                  scheduler_port=0, dashboard_address=None, silence_logs=logging.CRITICAL) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        worker_pids = set(client.run(os.getpid).values())
        env = {"KAILASH_HOME": str(tmp_path / "home"), "QUEUE_TEST_EFFECTS": str(effects), "QUEUE_TEST_DELAY": "0.3",
               "QUEUE_TEST_SLOTS": "2", "KAILASH_QUEUE_LEASE": "300", "KAILASH_DATABASE_URL": "",
               "QUEUE_TEST_DASK": cluster.scheduler_address}
        first, url = _start(env)
        try:
            tokens = {_submit(url, f"d{i:02d}"): f"d{i:02d}" for i in range(6)}
            _wait_lines(effects, 3, 60)
            os.kill(first.pid, signal.SIGKILL)
            first.wait(10)
            second, url = _start(env)
            try:
                records = _records(url, list(tokens), 60)
            finally:
                _stop(second)
        finally:
            _stop(first)
    assert all(r["status"] == "completed" for r in records.values()), records
    pids = {p for _, _, p in _effects(effects)}
    assert pids & worker_pids  # first attempts ran on the cluster
    resumed = [r for r in records.values() if ((r.get("extra") or {}).get("queue") or {}).get("reused")]
    assert resumed, "no run was taken over with finished nodes to reuse"
    assert second.pid in pids  # the resumed ones went on in the taking-over gateway's own process
    assert pids <= worker_pids | {second.pid}  # nothing ran in the killed gateway's process
