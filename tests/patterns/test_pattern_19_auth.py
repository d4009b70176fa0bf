"""Seed pattern 19 (Authentication Security), run against the local test server.

Credentials come from the environment exactly as in the sample; the token endpoint and
the API are the local uvicorn app. The saved workflow must refer to the environment
variables, never contain their values.
"""

from __future__ import annotations

import json
import os

import pytest

from kailash.errors import WorkflowValidationError
from kailash.nodes.api.auth import APIKeyNode, OAuth2Node, clear_token_cache
from kailash.nodes.api.rest import RESTClientNode
from kailash.runtime import LocalRuntime
from kailash.workflow import Workflow
from tests.servers import fixtures as servers
from tests.servers.http_app import API_KEY, CLIENT_ID, CLIENT_SECRET

# the local test servers (fixtures) this module uses
http_server = servers.http_server


@pytest.fixture(autouse=True)
def _credentials(monkeypatch):
    monkeypatch.setenv("API_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("API_CLIENT_SECRET", CLIENT_SECRET)
    monkeypatch.setenv("API_KEY", API_KEY)
    clear_token_cache()
    yield
    clear_token_cache()


def build(url: str):
    # --- the sample, as written (placeholders filled) ---------------------------------------
    # Secure credential management using environment variables
    workflow = Workflow("secure_api_integration")

    # OAuth2 with environment-based credentials
    oauth_node = OAuth2Node(
        token_url=f"{url}/token",
        client_id=os.getenv("API_CLIENT_ID"),  # From environment
        client_secret=os.getenv("API_CLIENT_SECRET"),  # From environment
        scope="read:data"
    )

    # API key with secure storage
    api_key_node = APIKeyNode(
        api_key=os.getenv("API_KEY"),  # From environment
        placement="header",
        key_name="Authorization",
        prefix="Bearer"
    )

    # REST client with authentication
    rest_node = RESTClientNode(
        base_url=f"{url}/protected/data",
        auth_type="oauth2",
        auth_config={"oauth2_node": oauth_node}
    )

    workflow.add_node("auth", oauth_node)
    workflow.add_node("api", rest_node)
    workflow.connect("auth", "api")
    # ------------------------------------------------------------------------------------------
    return workflow, api_key_node


def test_pattern_19_oauth2_flow(http_server):
    workflow, _ = build(http_server.url)
    runtime = LocalRuntime(record_outputs="always")
    results, run_id = runtime.execute(workflow)
    assert results["api"]["data"]["auth"] == "oauth2"
    assert results["auth"]["scope"] == "read:data"
    record = json.dumps(runtime.get_run(run_id).to_dict(), default=str)
    for secret in (CLIENT_SECRET, API_KEY, results["auth"]["token"].reveal()):
        assert secret not in record


def test_pattern_19_credentials_stay_out_of_repr_and_saved_files(http_server, tmp_path):
    workflow, api_key_node = build(http_server.url)
    assert "Secret(env='API_CLIENT_SECRET')" == repr(workflow.nodes["auth"].config["client_secret"])
    assert API_KEY not in repr(api_key_node.config) and CLIENT_SECRET not in repr(workflow.nodes["auth"].config)
    path = tmp_path / "secure.yaml"
    workflow.save(str(path), format="yaml")
    text = path.read_text()
    assert CLIENT_SECRET not in text and "${API_CLIENT_SECRET}" in text
    assert "oauth2_node: auth" in text

    # loading resolves the reference from the environment and runs the same way
    loaded = Workflow.load(str(path))
    results, _ = LocalRuntime().execute(loaded)
    assert results["api"]["data"]["auth"] == "oauth2"


def test_pattern_19_api_key_node_connected_to_the_client(http_server):
    _, api_key_node = build(http_server.url)
    workflow = Workflow("api_key_integration")
    workflow.add_node("key", api_key_node)
    workflow.add_node("api", RESTClientNode(base_url=f"{http_server.url}/protected/data"))
    workflow.connect("key", "api")
    results, _ = LocalRuntime().execute(workflow)
    assert results["api"]["data"]["auth"] == "api_key"
    assert API_KEY not in repr(results)


def test_pattern_19_missing_environment_variable_is_reported(http_server, monkeypatch):
    monkeypatch.delenv("API_CLIENT_SECRET")
    workflow, _ = build(http_server.url)
    with pytest.raises(WorkflowValidationError, match=r"node 'auth' \(OAuth2Node\) requires parameter 'client_secret'"):
        LocalRuntime().execute(workflow)  # reported before anything runs
