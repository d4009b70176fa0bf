"""A gateway that stalls past its lease, with real processes and a real fault (SIGSTOP).

Gateway A runs queued runs of six slow nodes (each appends ``token node pid`` to a file
when it starts, and again to another when it ends); it is frozen mid-run (``SIGSTOP``)
for longer than its 2 s lease; gateway B, on the same PostgreSQL, takes the runs over
and continues them; then A is let go (``SIGCONT``). The runs' start offsets and the
moment of the stop are seeded, so each round freezes the runs at different nodes.

What must hold: every run completes once in the queue, recorded ``completed`` by B (its
``extra.queue``: attempt 2, A the previous worker), not overwritten by A; per run, a node
ran in both processes only if A had it in flight when it froze (at most one), or had just
finished it (within the run log's group commit, a few ms: not yet recorded); A starts no
node of a run once it is taken over — also not in the moment between waking up and its
heartbeat finding the claim gone (its own clock tells it its lease lapsed).
"""

from __future__ import annotations

import collections
import contextlib
import os
import random
import signal
import time
from pathlib import Path

import httpx
from test_queue_processes import PG_URL, _records, _start, _stop, pg_schemas  # noqa: F401  (fixture)

STEPS = ("a", "b", "c", "d", "e", "f")
LEASE = 2.0
RUNS = 5  # per round: one stop point per run
# a node's finish reaches the durable record a few ms after it ends (the run log's group commit,
# docs/runtimes.md "Durable runs"): one that ended this close before the stop may run again
RECORD_LAG = 0.25
ROUNDS = 3


def _lines(path: Path) -> list[tuple[str, str, int]]:
    if not path.exists():
        return []
    return [(t, s, int(p)) for t, s, p, *_ in (line.split() for line in path.read_text().splitlines())]


def _ended_at(path: Path) -> dict[tuple[str, str, int], float]:
    return {(t, s, int(p)): float(at) for t, s, p, at in (line.split() for line in path.read_text().splitlines())}


def _submit(url: str, token: str) -> str:
    reply = httpx.post(f"{url}/workflows/effects/execute?async=true", timeout=10,
                       json={"parameters": {s: {"token": token} for s in STEPS}})
    assert reply.status_code == 202, reply.text
    return str(reply.json()["run_id"])


def _rows(where: str, run_ids: list[str]) -> dict[str, tuple[str, str, int]]:
    """The queue rows of ``run_ids``: ``where`` is the PostgreSQL schema, or the SQLite file."""
    if where.endswith(".db"):
        import sqlite3

        with contextlib.closing(sqlite3.connect(where, timeout=10)) as conn:
            rows = conn.execute("SELECT run_id, status, owner, attempts FROM run_queue").fetchall()
        return {r[0]: (r[1], r[2], r[3]) for r in rows if r[0] in run_ids}
    import psycopg

    with psycopg.connect(PG_URL) as conn:
        rows = conn.execute(f'SELECT run_id, status, owner, attempts FROM "{where}".run_queue '
                            "WHERE run_id = ANY(%s)", (run_ids,)).fetchall()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def _round(rng: random.Random, n: int, url_a: str, a_pid: int, where: str, starts: Path,
           ends: Path) -> dict[str, object]:
    """Submit ``RUNS`` runs to A at seeded offsets, freeze A, let B take them over, wake A; check."""
    offsets = sorted([0.0] + [rng.uniform(0.0, 1.1) for _ in range(RUNS - 1)])
    tokens: dict[str, str] = {}
    t0 = time.monotonic()
    for i, off in enumerate(offsets):
        time.sleep(max(0.0, t0 + off - time.monotonic()))
        token = f"r{n}x{i}"
        tokens[_submit(url_a, token)] = token
    # every run is past its first node, none has finished; in odd rounds the first is in its last node
    stop = t0 + rng.uniform(1.3, 1.45) if n % 2 else time.monotonic() + rng.uniform(0.1, 0.35)
    time.sleep(max(0.0, stop - time.monotonic()))
    os.kill(a_pid, signal.SIGSTOP)
    stopped, stopped_at = time.monotonic(), time.time()
    try:
        seen_starts, seen_ends = len(_lines(starts)), len(_lines(ends))
        ids = list(tokens)
        deadline = time.monotonic() + 20
        while True:  # B claims every run A was running (its lease expires; no process died)
            rows = _rows(where, ids)
            if all(status == "completed" or (owner is not None and f":{a_pid}:" not in owner)
                   for status, owner, _ in rows.values()):  # (a run A finished before the stop: no stop point)
                break
            assert time.monotonic() < deadline, f"B did not take the runs over: {rows}"
            time.sleep(0.1)
        if n % 2:  # B has finished them: A, waking, must not record its own outcome over B's
            while any(status != "completed" for status, _, _ in _rows(where, ids).values()):
                assert time.monotonic() < deadline, f"B did not finish the runs: {_rows(where, ids)}"
                time.sleep(0.1)
        else:
            time.sleep(rng.uniform(0.0, 0.4))  # B is running them
    finally:
        os.kill(a_pid, signal.SIGCONT)
    frozen = time.monotonic() - stopped  # (about the lease: it runs from A's last renewal before the stop)
    return {"tokens": tokens, "seen_starts": seen_starts, "seen_ends": seen_ends, "frozen": frozen,
            "stopped_at": stopped_at}


def _check(url_a: str, url_b: str, a_pid: int, b_pid: int, where: str, starts: Path, ends: Path,
           rounds: list[dict[str, object]]) -> dict[str, int]:
    tally: collections.Counter[str] = collections.Counter()
    problems: list[str] = []
    all_starts, all_ends = _lines(starts), _lines(ends)
    for rnd in rounds:
        tokens: dict[str, str] = rnd["tokens"]  # type: ignore[assignment]
        records = _records(url_b, list(tokens), 30)
        from_a = _records(url_a, list(tokens), 30)  # A answers from the record too, not from what it saw
        rows = _rows(where, list(tokens))
        before_starts = all_starts[: rnd["seen_starts"]]  # type: ignore[misc]
        before_ends = all_ends[: rnd["seen_ends"]]  # type: ignore[misc]
        for run_id, token in tokens.items():
            status, owner, attempts = rows[run_id]
            if (status, attempts) == ("completed", 1) and f":{a_pid}:" in owner:  # A finished it before the stop
                assert sorted(s for t, s, _ in all_starts if t == token) == sorted(STEPS), token
                tally["finished_before_stop"] += 1
                continue
            assert (status, attempts) == ("completed", 2) and f":{b_pid}:" in owner, (run_id, rows[run_id])
            record = records[run_id]
            queue = record["extra"]["queue"]
            assert record["status"] == "completed" and queue["attempt"] == 2, (run_id, record)
            assert f":{a_pid}:" in queue["previous_worker"], queue
            seen_by_a = from_a[run_id]
            if seen_by_a["status"] != "completed" or (seen_by_a.get("extra") or {}).get("queue") != queue:
                problems.append(f"run {token}: A shows {seen_by_a['status']} {seen_by_a.get('extra')}, not B's record")
            ran = {n["node_id"] for n in record["nodes"] if n["status"] == "completed"}
            assert ran | set(queue["reused"]) == set(STEPS), (run_id, record["nodes"], queue)
            by_a = [s for t, s, p in all_starts if t == token and p == a_pid]
            by_b = [s for t, s, p in all_starts if t == token and p == b_pid]
            assert set(by_a) | set(by_b) == set(STEPS) and len(by_a) == len(set(by_a)) and len(by_b) == len(set(by_b))
            a_before = [s for t, s, p in before_starts if t == token and p == a_pid]
            a_ended = {s for t, s, p in before_ends if t == token and p == a_pid}
            a_after = by_a[len(a_before):]  # nodes A started after it was frozen
            twice = set(by_a) & set(by_b)
            in_flight = a_before[-1] if a_before and a_before[-1] not in a_ended else None
            if in_flight is not None:  # frozen inside a node: A starts nothing more of the run
                tally["in_flight"] += 1
                tally["ran_twice"] += bool(twice)
                lag = {s: round(rnd["stopped_at"] - _ended_at(ends)[(token, s, a_pid)], 4)  # type: ignore[operator]
                       for s in twice - {in_flight}}
                if lag:
                    print(f"run {token}: ran in both {sorted(twice)}; ended before the stop by {lag} s")
                    tally["record_lag"] += 1
                if a_after or any(v > RECORD_LAG for v in lag.values()):
                    problems.append(f"run {token}: frozen in node {in_flight}, A then started {a_after}; "
                                    f"ran in both gateways: {sorted(twice)}")
            else:  # frozen between two nodes: the next one may have passed its check already
                tally["between_nodes"] += 1
                tally["started_after_wake"] += bool(a_after)
                if len(a_after) > 1 or not twice <= set(a_after):
                    problems.append(f"run {token}: frozen between nodes, A then started {a_after}; "
                                    f"ran in both gateways: {sorted(twice)}")
            tally["frozen_in_last_node"] += in_flight == STEPS[-1]
            reused = set(queue["reused"])
            assert reused <= set(a_before) and not (reused & set(by_b)), (token, reused, by_b)
    print(f"stop points: {dict(tally)}")
    assert not problems, "\n".join(problems)
    return dict(tally)


def _frozen_and_taken_over(tmp_path: Path, env: dict[str, str], where: str, rounds: int) -> None:
    starts, ends = tmp_path / "starts.txt", tmp_path / "ends.txt"
    env = {**env, "QUEUE_TEST_EFFECTS": str(starts), "QUEUE_TEST_ENDS": str(ends), "QUEUE_TEST_DELAY": "0.3",
           "QUEUE_TEST_STEPS": ",".join(STEPS), "QUEUE_TEST_SLOTS": str(RUNS + 1),
           "KAILASH_QUEUE_LEASE": f"{LEASE:g}",
           "QUEUE_TEST_EXPIRE_DEAD": "0"}  # takeover by lease expiry alone, as across hosts
    a, url_a = _start(env)
    b, url_b = _start(env)
    try:
        rng = random.Random(int(os.environ.get("QUEUE_STALL_SEED", "7")))
        done = []
        for n in range(rounds):
            done.append(_round(rng, n, url_a, a.pid, where, starts, ends))
            _records(url_b, list(done[-1]["tokens"]), 30)  # type: ignore[call-overload]
            time.sleep(0.8)  # A has woken: its in-flight nodes end, its fence stops the runs (records read after)
        tally = _check(url_a, url_b, a.pid, b.pid, where, starts, ends, done)
        print(f"frozen for {[round(r['frozen'], 2) for r in done]} s")  # type: ignore[call-overload]
        assert sum(tally.get(k, 0) for k in ("in_flight", "between_nodes", "finished_before_stop")) == RUNS * rounds
        assert tally.get("in_flight", 0) + tally.get("between_nodes", 0) >= RUNS * rounds - 2
        assert a.poll() is None and b.poll() is None
    finally:
        for proc in (a, b):
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
            _stop(proc)


def test_a_gateway_frozen_past_its_lease_starts_no_node_of_its_taken_over_runs(tmp_path, pg_schemas):  # noqa: F811
    env = {"KAILASH_DATABASE_URL": PG_URL, "QUEUE_TEST_REGISTRY": pg_schemas[0], "QUEUE_TEST_SCHEMA": pg_schemas[1],
           "KAILASH_HOME": str(tmp_path / "home")}
    _frozen_and_taken_over(tmp_path, env, pg_schemas[0], ROUNDS)


def test_the_same_with_two_gateways_on_one_sqlite_home(tmp_path):
    home = tmp_path / "home"
    _frozen_and_taken_over(tmp_path, {"KAILASH_HOME": str(home), "KAILASH_DATABASE_URL": ""},
                           str(home / "queue.db"), 2)
