"""`kailash run` overheads: the result preview and the progress counting of long steps.

Run: ``python bench/cli.py``. Prints two tables (median of 5):

- preview: the old summary (``json.dumps`` of the whole output, then cut to 200 characters)
  against ``kailash.cli.main._summarise``, which walks only what it prints;
- CSV read + CSV write of N rows in-process, with nobody listening to progress (the
  iterator is not wrapped: the library and gateway case) and with a listener installed
  (what ``kailash run`` on a terminal does).
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kailash.cli.main import _summarise  # noqa: E402
from kailash.nodes import progress  # noqa: E402
from kailash.nodes.data.readers import CSVReaderNode  # noqa: E402
from kailash.nodes.data.writers import CSVWriterNode  # noqa: E402


def median_ms(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def old_summary(value) -> str:
    text = json.dumps(value, default=repr)
    return text if len(text) <= 200 else text[:197] + "..."


def main() -> None:
    print(f"{'rows':>10} | {'json.dumps preview':>18} | {'_summarise':>10}")
    print("-" * 46)
    for n in (10_000, 100_000, 1_000_000):
        value = {"data": [{"id": i, "name": f"n{i}", "amount": i * 0.5} for i in range(n)]}
        print(f"{n:>10} | {median_ms(lambda v=value: old_summary(v), 3):>15.1f} ms | "
              f"{median_ms(lambda v=value: _summarise(v)):>7.3f} ms")
    print()
    print(f"{'rows':>10} | {'no listener':>12} | {'listener':>12} | overhead")
    print("-" * 52)
    with tempfile.TemporaryDirectory() as d:
        for n in (100_000, 1_000_000):
            src, dst = Path(d) / f"in-{n}.csv", Path(d) / f"out-{n}.csv"
            with src.open("w") as f:
                f.write("id,name,amount\n")
                f.writelines(f"{i},n{i},{i * 0.5}\n" for i in range(n))

            def read_write(s=src, t=dst) -> None:
                rows = CSVReaderNode(name="read", file_path=str(s)).execute()["data"]
                CSVWriterNode(name="write", file_path=str(t)).execute(data=rows)

            repeat = 5 if n < 1_000_000 else 3
            quiet = median_ms(read_write, repeat)
            previous = progress.set_progress_listener(lambda event: None)
            try:
                listened = median_ms(read_write, repeat)
            finally:
                progress.set_progress_listener(previous)
            print(f"{n:>10} | {quiet:>9.0f} ms | {listened:>9.0f} ms | {100 * (listened - quiet) / quiet:+.1f}%")


if __name__ == "__main__":
    main()
