"""Fixtures for the security tests: policies with real directories, and sandbox cleanup."""

from __future__ import annotations

import os

import pytest

from kailash.security.sandbox import shutdown_sandboxes
from kailash.security.sandbox.files import bwrap_available
from tests.security.helpers import Runner, make_config

ISOLATIONS = ["auto", "process"]


@pytest.fixture(scope="module", autouse=True)
def _stop_sandboxes_after_module():
    yield
    shutdown_sandboxes()


@pytest.fixture(scope="module")
def sandbox_dirs(tmp_path_factory):
    """An allowed directory, and an outside directory that must stay untouched."""
    base = tmp_path_factory.mktemp("sandbox")
    allowed = base / "allowed"
    outside = base / "outside"
    allowed.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text("top secret host data")
    (allowed / "input.txt").write_text("hello from the allowed directory")
    os.symlink(outside / "secret.txt", allowed / "link_to_secret.txt")
    return allowed, outside


@pytest.fixture(scope="module", params=ISOLATIONS)
def isolation(request):
    if request.param == "bwrap" and not bwrap_available():
        pytest.skip("bubblewrap is not available")
    return request.param


@pytest.fixture
def run(sandbox_dirs, isolation):
    allowed, _ = sandbox_dirs
    return Runner(make_config(allowed, isolation))
