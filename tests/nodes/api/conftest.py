"""Fixtures for the API node tests: the local servers and a clean OAuth2 token cache."""

from __future__ import annotations

import pytest

from tests.servers.fixtures import dead_url, http_server, https_server, ws_server  # noqa: F401


@pytest.fixture(autouse=True)
def _fresh_token_cache():
    from kailash.nodes.api.auth import clear_token_cache

    clear_token_cache()
    yield
    clear_token_cache()
