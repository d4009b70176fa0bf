"""CI=true turns a skip for a missing service into a failure; elsewhere it stays a skip."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TESTS = '''
import pytest

def test_needs_postgres():
    pytest.skip("no PostgreSQL at postgresql://127.0.0.1:5432/test: connection refused")

@pytest.fixture
def redis_up():
    pytest.skip("no Redis at redis://127.0.0.1:6379: refused")

def test_needs_redis(redis_up):
    pass

def test_other_skip():
    pytest.skip("bubblewrap is not available")
'''


def _run(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_services.py").write_text(TESTS)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                           "-p", "tests.service_policy", "-rA", str(tmp_path / "test_services.py")],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)


def test_in_ci_a_missing_service_fails_the_run(tmp_path):
    proc = _run(tmp_path, "true")
    assert proc.returncode == 1, proc.stdout
    assert "1 failed" in proc.stdout and "1 error" in proc.stdout and "1 skipped" in proc.stdout, proc.stdout
    assert "CI=true: a service this test needs is missing" in proc.stdout


def test_outside_ci_it_skips(tmp_path):
    proc = _run(tmp_path, None)
    assert proc.returncode == 0, proc.stdout
    assert "3 skipped" in proc.stdout, proc.stdout
