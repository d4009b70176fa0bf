"""Schedules with a controlled clock: when they fire, catch-up after downtime, exactly once across schedulers."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from kailash.errors import ScheduleError
from kailash.runtime.schedule_store import SQLiteScheduleStore
from kailash.runtime.schedules import Scheduler, fire_run_id, parse_interval

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
T0 = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC, a multiple of 3600


class Queue:
    """A stand-in run queue that keeps every call (a duplicate would show)."""

    def __init__(self, fail: set[str] | None = None) -> None:
        self.calls: list[dict] = []
        self.fail = fail or set()
        self.lock = threading.Lock()

    def __call__(self, *, run_id, workflow, parameters, tenant_id=None, options=None) -> bool:
        if workflow in self.fail:
            raise ConnectionError("queue down")
        with self.lock:
            self.calls.append({"run_id": run_id, "workflow": workflow, "parameters": parameters,
                               "tenant_id": tenant_id, "options": options})
        return True

    @property
    def run_ids(self) -> list[str]:
        return [c["run_id"] for c in self.calls]


@pytest.fixture
def store(tmp_path):
    s = SQLiteScheduleStore(tmp_path / "schedules.db")
    yield s
    s.close()


def test_interval_fires_on_its_grid_once_per_fire(store):
    queue = Queue()
    scheduler = Scheduler(store, queue)
    s = store.add(workflow="etl", every="1m", parameters={"load": {"day": 1}}, tenant_id="acme", now=T0)
    assert s.next_fire_at == T0 + 60
    assert scheduler.tick(T0 + 59).fires == ()
    report = scheduler.tick(T0 + 60.4)
    assert [f.fire_at for f in report.fires] == [T0 + 60]
    assert scheduler.tick(T0 + 61).fires == ()  # already fired: a second tick enqueues nothing
    assert scheduler.tick(T0 + 125).fires[0].fire_at == T0 + 120
    assert queue.run_ids == [f"sched-{s.id}-{int(T0) + 60}", f"sched-{s.id}-{int(T0) + 120}"]
    assert queue.calls[0]["parameters"] == {"load": {"day": 1}} and queue.calls[0]["tenant_id"] == "acme"
    assert queue.calls[0]["options"] == {"schedule_id": s.id, "fire_at": T0 + 60}
    assert [f.run_id for f in store.fires(s.id)] == list(reversed(queue.run_ids))
    assert store.get(s.id, tenant_id="acme").next_fire_at == T0 + 180


def test_cron_fires_at_its_times_in_its_timezone(store):
    queue = Queue()
    scheduler = Scheduler(store, queue)
    every5 = store.add(workflow="a", cron="*/5 * * * *", now=T0 + 1)
    berlin = store.add(workflow="b", cron="0 9 * * *", timezone="Europe/Berlin", now=T0 - 7200)
    assert every5.next_fire_at == T0 + 300
    assert berlin.next_fire_at == T0  # 09:00 in Berlin is 08:00 UTC in January
    assert [f.schedule_id for f in scheduler.tick(T0 + 0.5).fires] == [berlin.id]
    assert [f.schedule_id for f in scheduler.tick(T0 + 300).fires] == [every5.id]
    assert store.get(berlin.id).next_fire_at == T0 + 86400


def _downtime(store, catchup, *, now, grace=60.0, max_catchup=1000):
    queue = Queue()
    s = store.add(workflow="w", every=60, catchup=catchup, now=T0)
    report = Scheduler(store, queue, grace=grace, max_catchup=max_catchup).tick(now)
    return s, queue, report


def test_catchup_all_runs_every_missed_fire_in_order(store):
    s, queue, report = _downtime(store, "all", now=T0 + 605)  # down for ten fires
    assert [f.fire_at for f in report.fires] == [T0 + 60 * k for k in range(1, 11)]
    assert queue.run_ids == [fire_run_id(s.id, T0 + 60 * k) for k in range(1, 11)]
    assert report.dropped == 0 and store.get(s.id).next_fire_at == T0 + 660


def test_catchup_all_is_capped_to_the_most_recent_fires(store):
    _, _, report = _downtime(store, "all", now=T0 + 605, max_catchup=3)
    assert [f.fire_at for f in report.fires] == [T0 + 480, T0 + 540, T0 + 600]
    assert report.dropped == 7


def test_catchup_skip_runs_only_a_fire_within_grace(store):
    _, queue, report = _downtime(store, "skip", now=T0 + 605, grace=10)
    assert [f.fire_at for f in report.fires] == [T0 + 600] and report.dropped == 9
    store2 = SQLiteScheduleStore(store.path.with_name("other.db"))
    s, queue, report = _downtime(store2, "skip", now=T0 + 625, grace=10)  # even the last one is 25 s late
    assert report.fires == () and queue.calls == [] and report.dropped == 10
    assert store2.get(s.id).next_fire_at == T0 + 660  # the schedule goes on from now
    assert store2.fires(s.id) == []


def test_catchup_latest_runs_the_last_missed_fire_once(store):
    _, queue, report = _downtime(store, "latest", now=T0 + 625, grace=10)
    assert [f.fire_at for f in report.fires] == [T0 + 600] and report.dropped == 9


def test_paused_schedule_misses_nothing_and_resumes_from_now(store):
    queue = Queue()
    scheduler = Scheduler(store, queue)
    s = store.add(workflow="w", every=60, catchup="all", now=T0)
    paused = store.update(s.id, enabled=False, now=T0 + 10)
    assert paused.enabled is False and paused.next_fire_at is None
    assert scheduler.tick(T0 + 3600).fires == ()
    resumed = store.update(s.id, enabled=True, now=T0 + 3630)
    assert resumed.next_fire_at == T0 + 3660
    assert [f.fire_at for f in scheduler.tick(T0 + 3660).fires] == [T0 + 3660]


def test_changing_the_timing_reschedules_from_now(store):
    s = store.add(workflow="w", every=60, now=T0)
    changed = store.update(s.id, cron="0 * * * *", now=T0 + 10)
    assert (changed.cron, changed.every, changed.next_fire_at) == ("0 * * * *", None, T0 + 3600)


def test_a_failing_enqueue_rolls_back_and_is_retried_while_others_fire(store):
    queue = Queue(fail={"down"})
    scheduler = Scheduler(store, queue)
    bad = store.add(workflow="down", every=60, now=T0)
    good = store.add(workflow="up", every=60, now=T0)
    report = scheduler.tick(T0 + 60)
    assert report.failed == (bad.id,) and [f.schedule_id for f in report.fires] == [good.id]
    assert store.fires(bad.id) == [] and store.get(bad.id).next_fire_at == T0 + 60  # nothing recorded
    queue.fail.clear()
    assert [f.run_id for f in scheduler.tick(T0 + 61).fires] == [fire_run_id(bad.id, T0 + 60)]


@pytest.mark.parametrize(("fields", "parameter"), [
    ({"cron": "61 * * * *"}, "cron"),
    ({"cron": "* * *"}, "cron"),
    ({"every": "5x"}, "every"),
    ({"every": 0}, "every"),
    ({"cron": "* * * * *", "every": 5}, "every"),
    ({}, "cron"),
    ({"every": 5, "timezone": "Mars/Base"}, "timezone"),
    ({"every": 5, "catchup": "some"}, "catchup"),
    ({"every": 5, "parameters": [1]}, "parameters"),
])
def test_invalid_schedules_name_the_field(store, fields, parameter):
    with pytest.raises(ScheduleError) as info:
        store.add(workflow="w", **fields)
    assert info.value.parameter == parameter
    assert store.list() == []


def test_interval_units():
    assert [parse_interval(v) for v in ("30s", "5m", "2h", "1d", 45, "7")] == [30, 300, 7200, 86400, 45, 7]
    with pytest.raises(ScheduleError, match="interval '1.5m' is not valid"):
        parse_interval("1.5m")


def test_tenants_see_only_their_own_schedules(store):
    mine = store.add(workflow="w", every=60, tenant_id="acme")
    theirs = store.add(workflow="w", every=60, tenant_id="globex")
    own = store.add(workflow="w", every=60)
    assert [s.id for s in store.list(tenant_id="acme")] == [mine.id]
    assert [s.id for s in store.list()] == [own.id]
    assert store.get(theirs.id, tenant_id="acme") is None
    assert store.update(theirs.id, tenant_id="acme", enabled=False) is None
    assert store.delete(theirs.id, tenant_id="acme") is False
    assert store.get(theirs.id, tenant_id="globex").enabled is True
    assert len(store.list(any_tenant=True)) == 3


# -- exactly once across schedulers sharing one database -------------------------------------------------


def _concurrent_ticks(stores, times):
    """Each store's scheduler ticks through ``times`` in its own thread, all at once."""
    queue = Queue()
    barrier = threading.Barrier(len(stores))
    errors: list[BaseException] = []

    def run(store):
        scheduler = Scheduler(store, queue, max_catchup=1000)
        try:
            barrier.wait(10)
            for now in times:
                scheduler.tick(now)
        except BaseException as exc:  # pragma: no cover - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    return queue


def _expected(schedules, until):
    return {fire_run_id(s.id, T0 + k * s.every) for s in schedules for k in range(1, int((until - T0) // s.every) + 1)}


def test_two_sqlite_schedulers_on_one_file_enqueue_each_fire_once(tmp_path):
    a, b = SQLiteScheduleStore(tmp_path / "s.db"), SQLiteScheduleStore(tmp_path / "s.db")
    schedules = [a.add(workflow=f"w{i}", every=10 * (1 + i % 3), catchup="all", now=T0) for i in range(12)]
    times = [T0 + 5 * k for k in range(1, 41)]
    queue = _concurrent_ticks([a, b], times)
    assert len(queue.run_ids) == len(set(queue.run_ids))
    assert set(queue.run_ids) == _expected(schedules, times[-1])


@pytest.fixture
def pg_schema():
    psycopg = pytest.importorskip("psycopg")
    schema = "sched_" + secrets.token_hex(4)
    yield schema
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_two_postgres_schedulers_enqueue_each_fire_once(pg_schema):
    from kailash.runtime.schedule_store import PostgresScheduleStore

    a, b = PostgresScheduleStore.connect(PG_URL, pg_schema), PostgresScheduleStore.connect(PG_URL, pg_schema)
    try:
        schedules = [a.add(workflow=f"w{i}", every=10 * (1 + i % 3), catchup="all", now=T0) for i in range(12)]
        times = [T0 + 5 * k for k in range(1, 41)]
        queue = _concurrent_ticks([a, b], times)
        assert len(queue.run_ids) == len(set(queue.run_ids))
        assert set(queue.run_ids) == _expected(schedules, times[-1])
        assert {f.run_id for s in schedules for f in b.fires(s.id, limit=100)} == set(queue.run_ids)
    finally:
        a.close()
        b.close()


_WORKER = r"""
import sys, psycopg
from kailash.runtime.schedule_store import PostgresScheduleStore
from kailash.runtime.schedules import Scheduler
url, schema, t0 = sys.argv[1], sys.argv[2], float(sys.argv[3])
store = PostgresScheduleStore.connect(url, schema)
log = psycopg.connect(url, autocommit=True)

def enqueue(*, run_id, workflow, parameters, tenant_id=None, options=None):
    log.execute(f'INSERT INTO "{schema}".enqueued VALUES (%s, %s)', (run_id, sys.argv[4]))
    return True

scheduler = Scheduler(store, enqueue)
print("ready", flush=True)
sys.stdin.readline()
for k in range(1, 61):
    scheduler.tick(t0 + 5 * k)
store.close()
"""


def test_two_gateway_processes_on_one_postgres_enqueue_each_fire_once(pg_schema, tmp_path):
    """Two real processes tick the same schedules at the same (controlled) times; a duplicate enqueue would show as a second row."""
    import psycopg

    from kailash.runtime.schedule_store import PostgresScheduleStore

    store = PostgresScheduleStore.connect(PG_URL, pg_schema)
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'CREATE TABLE "{pg_schema}".enqueued (run_id TEXT NOT NULL, process TEXT NOT NULL)')
    schedules = [store.add(workflow=f"w{i}", every=10 * (1 + i % 4), catchup="all", now=T0) for i in range(16)]
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    procs = [subprocess.Popen([sys.executable, str(script), PG_URL, pg_schema, str(T0), name], env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for name in ("a", "b")]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready"
        for p in procs:  # go together
            p.stdin.write("\n")
            p.stdin.flush()
        for p in procs:
            assert p.wait(120) == 0
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            rows = conn.execute(f'SELECT run_id, process FROM "{pg_schema}".enqueued').fetchall()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        store.close()
    run_ids = [r[0] for r in rows]
    assert {r[1] for r in rows} == {"a", "b"}  # both took part: each won some of the fires
    assert len(run_ids) == len(set(run_ids))
    assert set(run_ids) == _expected(schedules, T0 + 300)


def test_cron_follows_the_timezone_across_daylight_saving(store):
    before = store.add(workflow="w", cron="0 9 * * *", timezone="Europe/Berlin", now=1_806_883_200.0)  # 2027-04-05 00:00Z
    assert before.next_fire_at == 1_806_883_200.0 + 7 * 3600  # 09:00 CEST is 07:00 UTC in April
    winter = store.add(workflow="w", cron="0 9 * * *", timezone="Europe/Berlin", now=T0)
    assert (winter.next_fire_at - T0) % 3600 == 0 and (winter.next_fire_at - 8 * 3600) % 86400 == 0  # 08:00 UTC


def test_a_namespace_is_deleted_with_its_fires(store):
    gone = store.add(workflow="w", every=60, tenant_id="acme", now=T0)
    kept = store.add(workflow="w", every=60, now=T0)
    Scheduler(store, Queue()).tick(T0 + 60)
    assert store.delete_namespace("acme") == 1
    assert [s.id for s in store.list(any_tenant=True)] == [kept.id]
    assert store.fires(gone.id) == [] and len(store.fires(kept.id)) == 1


_CRASHER = r"""
import sys, time, psycopg
from kailash.runtime.schedule_store import PostgresScheduleStore
from kailash.runtime.schedules import Scheduler
url, schema, now = sys.argv[1], sys.argv[2], float(sys.argv[3])
store = PostgresScheduleStore.connect(url, schema)
log = psycopg.connect(url, autocommit=True)

def enqueue(*, run_id, workflow, parameters, tenant_id=None, options=None):
    log.execute(f'INSERT INTO "{schema}".queue VALUES (%s) ON CONFLICT DO NOTHING', (run_id,))
    print("enqueued", run_id, flush=True)
    time.sleep(600)  # killed here: after the enqueue, before the fire is committed

Scheduler(store, enqueue).tick(now)
"""


def test_a_gateway_killed_mid_tick_loses_no_fire_and_an_idempotent_queue_sees_it_once(pg_schema, tmp_path):
    """SIGKILL a process holding a due schedule's lock after it enqueued: the lock goes with it, the next
    scheduler fires the same run id again, and a queue keyed on run id keeps one."""
    import psycopg

    from kailash.runtime.schedule_store import PostgresScheduleStore

    store = PostgresScheduleStore.connect(PG_URL, pg_schema)
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'CREATE TABLE "{pg_schema}".queue (run_id TEXT PRIMARY KEY)')
    s = store.add(workflow="w", every=60, now=T0)
    script = tmp_path / "crasher.py"
    script.write_text(_CRASHER)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([sys.executable, str(script), PG_URL, pg_schema, str(T0 + 60)], env=env,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().split() == ["enqueued", fire_run_id(s.id, T0 + 60)]
        assert Scheduler(store, Queue()).tick(T0 + 60).fires == ()  # locked by the live process: skipped
        proc.kill()
        proc.wait(30)
        answers: list[bool] = []

        def idempotent(*, run_id, workflow, parameters, tenant_id=None, options=None):
            with psycopg.connect(PG_URL, autocommit=True) as conn:
                cur = conn.execute(f'INSERT INTO "{pg_schema}".queue VALUES (%s) ON CONFLICT DO NOTHING', (run_id,))
                answers.append(cur.rowcount == 1)
            return answers[-1]

        deadline = time.monotonic() + 15
        while True:  # the dead client's backend ends (and its lock goes) a moment after the kill, not at once
            report = Scheduler(store, idempotent).tick(T0 + 61)
            if report.fires or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert [f.run_id for f in report.fires] == [fire_run_id(s.id, T0 + 60)]
        assert answers == [False]  # the queue already had it from the killed process
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            assert conn.execute(f'SELECT count(*) FROM "{pg_schema}".queue').fetchone()[0] == 1
        assert [f.run_id for f in store.fires(s.id)] == [fire_run_id(s.id, T0 + 60)]
        assert store.get(s.id).next_fire_at == T0 + 120
    finally:
        if proc.poll() is None:
            proc.kill()
        store.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_fire_history_keeps_the_latest_fires(tmp_path, monkeypatch, backend, request):
    from kailash.runtime import schedule_store

    monkeypatch.setattr(schedule_store, "KEEP_FIRES", 3)
    if backend == "sqlite":
        store = SQLiteScheduleStore(tmp_path / "s.db")
    else:
        store = schedule_store.PostgresScheduleStore.connect(PG_URL, request.getfixturevalue("pg_schema"))
    try:
        s = store.add(workflow="w", every=60, catchup="all", now=T0)
        scheduler = Scheduler(store, Queue())
        assert len(scheduler.tick(T0 + 300).fires) == 5
        assert [f.fire_at for f in store.fires(s.id)] == [T0 + 300, T0 + 240, T0 + 180]
        assert [f.fire_at for f in scheduler.tick(T0 + 360).fires] == [T0 + 360]
        assert [f.fire_at for f in store.fires(s.id)] == [T0 + 360, T0 + 300, T0 + 240]
    finally:
        store.close()
