"""Schedule ticks: the cost of an idle tick, and fires per second with one and two schedulers on one store.

Run: ``python bench/schedules.py``. SQLite in a temporary file, and PostgreSQL at
``127.0.0.1:5432/test`` when it answers (a throwaway schema). Each fire is recorded and
handed to an in-memory ``enqueue`` (the queue's own cost is not measured here). A
gateway ticks once a second, so an idle tick far below a millisecond keeps it cheap.
"""

from __future__ import annotations

import secrets
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kailash.runtime.schedule_store import PostgresScheduleStore, SQLiteScheduleStore  # noqa: E402
from kailash.runtime.schedules import Scheduler  # noqa: E402

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
T0 = 1_800_000_000.0
N = 300


def _enqueue(**run: object) -> bool:
    return True


def measure(open_store: object) -> tuple[float, float, float]:
    """``(idle tick ms, fires/s with one scheduler, fires/s with two)``."""
    a = open_store()  # type: ignore[operator]
    b = open_store()  # type: ignore[operator]
    try:
        for i in range(N):
            a.add(workflow=f"w{i}", every=60, now=T0)
        idle = Scheduler(a, _enqueue)
        idle_ms = statistics.median(_timed(lambda: idle.tick(T0 + 1)) for _ in range(50)) * 1000
        one = N / _timed(lambda: Scheduler(a, _enqueue, batch=N).tick(T0 + 60))
        barrier = threading.Barrier(2)

        def run(store: object) -> None:
            barrier.wait()
            Scheduler(store, _enqueue, batch=N).tick(T0 + 120)

        threads = [threading.Thread(target=run, args=(s,)) for s in (a, b)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        two = N / (time.perf_counter() - start)
        return idle_ms, one, two
    finally:
        a.close()
        b.close()


def _timed(fn: object) -> float:
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - start


def main() -> int:
    rows = []
    path = Path(tempfile.mkdtemp()) / "schedules.db"
    rows.append(("SQLite", *measure(lambda: SQLiteScheduleStore(path))))
    try:
        import psycopg

        psycopg.connect(PG_URL, connect_timeout=3).close()
    except Exception as exc:
        print(f"(PostgreSQL skipped: {type(exc).__name__})")
    else:
        schema = "bench_sched_" + secrets.token_hex(4)
        try:
            rows.append(("PostgreSQL", *measure(lambda: PostgresScheduleStore.connect(PG_URL, schema))))
        finally:
            with psycopg.connect(PG_URL, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    print(f"{N} interval schedules due at once; each fire recorded and enqueued in its own transaction")
    print(f"{'store':<12}{'idle tick (ms)':>16}{'fires/s, 1 scheduler':>24}{'fires/s, 2 schedulers':>24}")
    for name, idle_ms, one, two in rows:
        print(f"{name:<12}{idle_ms:>16.3f}{one:>24.0f}{two:>24.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
