"""Seed pattern 8 (External Service Integration), run against the local test server.

The sample's placeholders are filled with the local uvicorn app: its token endpoint and a
protected resource that accepts only tokens it issued.
"""

from __future__ import annotations

import json

import pytest

from kailash.errors import NodeExecutionError
from kailash.nodes.api.auth import OAuth2Node, clear_token_cache
from kailash.nodes.api.rest import RESTClientNode
from kailash.runtime import LocalRuntime
from kailash.security.secrets import Secret
from kailash.workflow import Workflow
from tests.servers import fixtures as servers
from tests.servers.http_app import CLIENT_ID, CLIENT_SECRET

# the local test servers (fixtures) this module uses
http_server = servers.http_server


@pytest.fixture(autouse=True)
def _fresh_tokens():
    clear_token_cache()
    yield
    clear_token_cache()


def build(url: str, client_secret: str = CLIENT_SECRET) -> Workflow:
    workflow = Workflow()

    # --- the sample, as written (placeholders filled) ---------------------------------------
    # OAuth authentication
    auth_node = OAuth2Node(
        config={
            "client_id": CLIENT_ID,
            "client_secret": client_secret,
            "token_url": f"{url}/token",
        }
    )

    # API client with auth
    api_client = RESTClientNode(
        config={
            "base_url": f"{url}/protected/items",
            "headers": {"Authorization": "Bearer {token}"},
            "rate_limit": 100,  # requests per minute
            "retry_count": 3,
        }
    )
    # ------------------------------------------------------------------------------------------
    workflow.add_node("auth", auth_node)
    workflow.add_node("api_client", api_client)

    # Connect auth to API client
    workflow.connect("auth", "api_client")
    return workflow


def test_pattern_08_runs_and_authenticates(http_server):
    runtime = LocalRuntime(record_outputs="always")
    results, run_id = runtime.execute(build(http_server.url))
    data = results["api_client"]["data"]
    assert data["auth"] == "oauth2" and data["items"][0]["name"] == "alpha"
    assert results["api_client"]["status_code"] == 200
    token = results["auth"]["token"]
    assert isinstance(token, Secret) and token.reveal() in http_server.state.tokens_issued

    # the token never reaches the run record, and the client secret never does either
    record = json.dumps(runtime.get_run(run_id).to_dict(), default=str)
    assert token.reveal() not in record and CLIENT_SECRET not in record
    assert runtime.get_run(run_id).status == "completed"


def test_pattern_08_reuses_the_cached_token_across_runs(http_server):
    workflow = build(http_server.url)
    before = len(http_server.state.tokens_issued)
    for _ in range(3):
        results, _ = LocalRuntime().execute(workflow)
        assert results["api_client"]["data"]["auth"] == "oauth2"
    assert len(http_server.state.tokens_issued) == before + 1
    assert results["auth"]["from_cache"] is True


def test_pattern_08_bad_credentials_fail_the_auth_node_without_leaking(http_server):
    runtime = LocalRuntime()
    with pytest.raises(NodeExecutionError, match=r"node 'auth' \(OAuth2Node\): the token endpoint .* rejected") as info:
        runtime.execute(build(http_server.url, client_secret="not-the-secret-123"))
    assert info.value.node_id == "auth" and info.value.run_id
    assert "not-the-secret-123" not in str(info.value)
    record = json.dumps(runtime.get_run(info.value.run_id).to_dict(), default=str)
    assert "not-the-secret-123" not in record


def test_pattern_08_saved_workflow_holds_no_secret(http_server, tmp_path):
    workflow = build(http_server.url)
    path = tmp_path / "external.yaml"
    workflow.save(str(path), format="yaml")
    text = path.read_text()
    assert CLIENT_SECRET not in text and "Bearer {token}" in text
