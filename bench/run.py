"""One command for every benchmark: ``python bench/run.py``.

Runs :mod:`bench.core` (the engine, issue 2) and then every other ``bench/*.py``
module that exposes a ``main()`` (runtimes, integration, security, agents, gateway:
added by their owners). ``python bench/run.py core runtimes`` runs only those.
A module that fails is reported and the others still run; the exit code is non-zero
if any module failed or missed a target.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

ORDER = ("core", "runtimes", "integration", "security", "agents", "gateway")


def modules(selected: list[str]) -> list[str]:
    """Bench module names to run: ``selected``, or core first and then every other one."""
    if selected:
        return selected
    found = sorted(p.stem for p in Path(__file__).parent.glob("*.py") if p.stem not in ("run", "__init__"))
    return [m for m in ORDER if m in found] + [m for m in found if m not in ORDER]


def main(argv: list[str] | None = None) -> int:
    status = 0
    for name in modules(list(sys.argv[1:] if argv is None else argv)):
        try:
            module = importlib.import_module(f"bench.{name}")
        except Exception:
            print(f"\n== bench/{name}.py: cannot import\n{traceback.format_exc()}")
            status = 1
            continue
        entry = getattr(module, "main", None)
        if entry is None:
            continue  # a helper module, not a benchmark
        print(f"\n== bench/{name}.py")
        sys.stdout.flush()
        argv_before = sys.argv
        sys.argv = [f"bench/{name}.py"]  # a module's own argument parsing sees no arguments
        try:
            code = entry()
        except SystemExit as exc:
            code = exc.code
        except Exception:
            traceback.print_exc()
            code = 1
        finally:
            sys.argv = argv_before
        if code:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
