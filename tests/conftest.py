"""Shared fixtures: every test gets its own KAILASH_HOME and no leftover security policy."""

from __future__ import annotations

import pytest

from tests.service_policy import pytest_runtest_makereport  # noqa: F401 - CI=true: a missing service fails


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    home = tmp_path / "kailash-home"
    home.mkdir()
    monkeypatch.setenv("KAILASH_HOME", str(home))
    yield home
    from kailash.runtime.store import close_stores
    from kailash.security.config import set_security_config

    set_security_config(None)
    close_stores(under=tmp_path)  # release each test's database connections


@pytest.fixture(autouse=True)
def _no_run_secrets_leak():
    """No run's secrets stay current after a test (a run that never closed its RunSecrets)."""
    yield
    from kailash.security import secrets

    leaked = secrets._current.get()
    if leaked is not None:
        secrets._current.set(None)
        pytest.fail(f"run secrets of run {leaked.run_id!r} are still current after the test")
