"""Sandboxed calls by result size: the cost of the result encoding (issue 11).

Run: ``python bench/sandbox_results.py``. A warm call returning a small result must
stay about as cheap as before the encoding (~0.1-0.25 ms); larger results pay for
the plain-data encoding in the worker and the bounded decoding in the host.
"""

from __future__ import annotations

import statistics
import time
import uuid

from kailash.security import SecurityConfig
from kailash.security.sandbox import run_sandboxed, shutdown_sandboxes
from kailash.security.sandbox.files import bwrap_available

CASES = [
    ("small result (one int)", "result = sum(range(1000))", 1000),
    ("10,000 rows of 3 fields", "result = [{'id': i, 'name': 'row%d' % i, 'v': i * 0.5} for i in range(10000)]", 20),
    ("1 MiB string", "result = 'x' * (1 << 20)", 100),
]


def main() -> None:
    modes = ["bwrap", "process"] if bwrap_available() else ["process"]
    print(f"{'isolation':10} {'result':28} {'median':>12}")
    for mode in modes:
        config = SecurityConfig(execution_timeout=30.0, isolation=mode)
        for name, code, calls in CASES:
            key = f"bench-{uuid.uuid4().hex}"
            run_sandboxed(key, code, [], {}, config, "bench")
            samples = []
            for _ in range(calls):
                t = time.perf_counter()
                run_sandboxed(key, code, [], {}, config, "bench")
                samples.append(time.perf_counter() - t)
            print(f"{mode:10} {name:28} {statistics.median(samples) * 1000:9.3f} ms")
    shutdown_sandboxes()


if __name__ == "__main__":
    main()
