"""A first end-to-end check of the engine: the README's example workflow runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_example_workflow_runs_end_to_end(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "kailash.cli", "run", str(ROOT / "examples" / "etl.yaml"), "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**__import__("os").environ},
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    names = [r["name"] for r in out["results"]["merge"]["merged_data"]]
    assert names == ["Ada Lovelace", "Grace Hopper", "Alan Turing", "Barbara Liskov"]
    assert "bronze" not in out["results"]  # the only bronze customer is 17: branch skipped
