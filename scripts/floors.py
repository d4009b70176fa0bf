"""Print a pip requirements file pinning every dependency of the given extras to its floor.

    python scripts/floors.py api http postgres > floors.txt
    pip install -r floors.txt      # then run tests with the checkout on PYTHONPATH

A requirement ``name>=X`` (or ``name>=X,<Y``) in pyproject.toml becomes ``name==X``: the
lowest version the project claims to work with, which the floors step of scripts/test.sh
then tests. ``kailash[...]`` self-references are followed. Requirements without a floor
are left out (nothing to pin). Only the standard library is used.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def floors(extras: list[str]) -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    optional = project.get("optional-dependencies", {})
    out: dict[str, str] = {}
    seen: set[str] = set()

    def add(reqs: list[str]) -> None:
        for req in reqs:
            m = re.match(r"^\s*([A-Za-z0-9_.-]+)\s*(\[([^\]]*)\])?\s*(.*)$", req)
            if not m:
                raise SystemExit(f"floors.py: cannot read requirement {req!r}")
            name, inner, spec = m.group(1), m.group(3), m.group(4)
            if name.lower() == "kailash":
                for extra in (inner or "").split(","):
                    if extra.strip() and extra.strip() not in seen:
                        seen.add(extra.strip())
                        add(optional.get(extra.strip(), []))
                continue
            floor = re.search(r">=\s*([0-9][A-Za-z0-9.]*)", spec)
            if floor:
                key = name.lower().replace("_", "-") + (f"[{inner}]" if inner else "")
                # the highest floor wins when two extras name the same package
                if key not in out or _version(floor.group(1)) > _version(out[key]):
                    out[key] = floor.group(1)

    add(project.get("dependencies", []))
    for extra in extras:
        if extra not in optional:
            raise SystemExit(f"floors.py: no extra '{extra}' in pyproject.toml (have: {', '.join(optional)})")
        seen.add(extra)
        add(optional[extra])
    return out


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text))


if __name__ == "__main__":
    for name, version in sorted(floors(sys.argv[1:]).items()):
        print(f"{name}=={version}")
