"""``pip install 'kailash[all]'`` is enough for every sample of the seed's pattern library."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SEED = Path("/work/shared/seed/pattern-library.md")
DISTRIBUTION = {"yaml": "pyyaml", "pandas": "pandas", "requests": "requests", "httpx": "httpx", "numpy": "numpy"}


def requirement_names(extra: str, extras: dict[str, list[str]], base: list[str]) -> set[str]:
    names = {re.split(r"[<>=\[; ]", r, maxsplit=1)[0].lower() for r in base}
    for req in extras[extra]:
        m = re.match(r"kailash\[([\w,]+)\]", req)
        if m:
            for inner in m.group(1).split(","):
                names |= requirement_names(inner, extras, [])
        else:
            names.add(re.split(r"[<>=\[; ]", req, maxsplit=1)[0].lower())
    return names


@pytest.mark.skipif(not SEED.exists(), reason="the seed pattern library is not here")
def test_the_all_extra_covers_every_third_party_import_of_the_seed_samples():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    provided = requirement_names("all", project["optional-dependencies"], project["dependencies"])
    imported = set()
    for block in re.findall(r"```python\n(.*?)```", SEED.read_text(), re.S):
        imported |= set(re.findall(r"^\s*(?:import|from)\s+(\w+)", block, re.M))
    third_party = sorted(m for m in imported if m not in sys.stdlib_module_names and m != "kailash")
    assert third_party, "the samples import no third-party module: the test reads nothing"
    missing = [m for m in third_party if DISTRIBUTION.get(m, m) not in provided]
    assert not missing, f"kailash[all] does not install {missing}"
