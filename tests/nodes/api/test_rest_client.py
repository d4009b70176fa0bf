"""RESTClientNode: templating, auth sources, retries, rate limit, errors, saving."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest

from kailash.errors import NodeConfigurationError, NodeExecutionError
from kailash.nodes.api import APIKeyNode, OAuth2Node, RESTClientNode
from kailash.security.secrets import Secret
from tests.servers.http_app import API_KEY, CLIENT_ID, CLIENT_SECRET


def token_for(server) -> str:
    r = httpx.post(f"{server.url}/token", data={"grant_type": "client_credentials", "client_id": CLIENT_ID,
                                                 "client_secret": CLIENT_SECRET}, timeout=5)
    return r.json()["access_token"]


def oauth(server) -> OAuth2Node:
    return OAuth2Node(name="auth", token_url=f"{server.url}/token", client_id=CLIENT_ID, client_secret=CLIENT_SECRET)


def test_placeholders_fill_headers_resource_and_query(http_server):
    api = RESTClientNode(name="api", base_url=f"{http_server.url}/protected", resource="/users/{user_id}",
                         headers={"Authorization": "Bearer {token}"}, params={"view": "{view}"})
    out = api.execute(token=Secret(token_for(http_server)), user_id=42, view="full")
    assert out["data"]["resource"] == "users/42" and out["data"]["auth"] == "oauth2"
    assert out["data"]["query"] == {"view": "full"}
    assert api.placeholders() == {"token", "user_id", "view"}


def test_missing_placeholder_value_is_a_clear_error(http_server):
    api = RESTClientNode(name="api", base_url=http_server.url, headers={"Authorization": "Bearer {token}"})
    with pytest.raises(NodeConfigurationError, match=r"node 'api' \(RESTClientNode\): header 'Authorization' uses "
                                                     r"\{token\} but no input named 'token' was given; connect"):
        api.execute()


def test_a_token_input_without_placeholder_becomes_a_bearer_header(http_server):
    out = RESTClientNode(base_url=http_server.url, resource="protected/x").execute(token=token_for(http_server))
    assert out["data"]["auth"] == "oauth2"


def test_api_key_node_outputs_authenticate_the_client(http_server):
    header = APIKeyNode(api_key=API_KEY).execute()
    api = RESTClientNode(base_url=http_server.url, resource="protected/h")
    assert api.execute(**header)["data"]["auth"] == "api_key"
    query = APIKeyNode(api_key=API_KEY, placement="query").execute()
    assert api.execute(**query)["data"]["query"] == {"api_key": API_KEY}


def test_auth_type_api_key_and_basic_and_bearer(http_server):
    api = RESTClientNode(base_url=http_server.url, resource="protected/k", auth_type="api_key",
                         auth_config={"api_key": API_KEY, "placement": "header", "key_name": "X-API-Key"})
    assert api.execute()["data"]["auth"] == "api_key"
    assert str(api.config["auth_config"]["api_key"]) == "***"
    node_ref = RESTClientNode(base_url=http_server.url, resource="protected/k", auth_type="api_key",
                              auth_config={"api_key_node": APIKeyNode(api_key=API_KEY, placement="query")})
    assert node_ref.execute()["data"]["auth"] == "api_key"
    bearer = RESTClientNode(base_url=http_server.url, resource="protected/b", auth_type="bearer",
                            auth_config={"token": token_for(http_server)})
    assert bearer.execute()["data"]["auth"] == "oauth2"
    basic = RESTClientNode(base_url=http_server.url, resource="echo", auth_type="basic",
                           auth_config={"username": "u", "password": "p-secret"})
    assert basic.execute()["data"]["headers"]["authorization"] == "Basic dTpwLXNlY3JldA=="
    with pytest.raises(NodeConfigurationError, match=r"'auth_type' expects one of .*got 'oauth'; did you mean 'oauth2'"):
        RESTClientNode(base_url=http_server.url, auth_type="oauth").execute()


def test_oauth2_node_in_auth_config_fetches_and_caches_the_token(http_server):
    auth = oauth(http_server)
    api = RESTClientNode(base_url=http_server.url, resource="protected/o", auth_type="oauth2",
                         auth_config={"oauth2_node": auth})
    before = len(http_server.state.tokens_issued)
    assert api.execute()["data"]["auth"] == "oauth2"
    assert api.execute()["data"]["auth"] == "oauth2"
    assert len(http_server.state.tokens_issued) == before + 1


def test_revoked_oauth2_token_is_refreshed_once(http_server):
    auth = oauth(http_server)
    api = RESTClientNode(base_url=http_server.url, resource="protected/r", auth_type="oauth2",
                         auth_config={"oauth2_node": auth})
    api.execute()
    httpx.post(f"{http_server.url}/revoke", timeout=5)  # the cached token is now refused
    assert api.execute()["data"]["auth"] == "oauth2"
    assert len(http_server.state.tokens_issued) == 1  # the fresh one


def test_revoked_token_refresh_in_async_use(http_server):
    auth = oauth(http_server)
    api = RESTClientNode(base_url=http_server.url, resource="protected/r", auth_type="oauth2",
                         auth_config={"oauth2_node": auth})

    async def main():
        await api.async_execute()
        async with httpx.AsyncClient() as client:
            await client.post(f"{http_server.url}/revoke")
        return await api.async_execute()

    assert asyncio.run(main())["data"]["auth"] == "oauth2"


def test_unauthorised_without_refresh_fails_naming_the_node(http_server):
    api = RESTClientNode(name="api", base_url=http_server.url, resource="protected/x")
    with pytest.raises(NodeExecutionError, match=r"node 'api' \(RESTClientNode\): GET .*/protected/x returned 401"):
        api.execute()
    out = RESTClientNode(base_url=http_server.url, resource="protected/x", raise_for_status=False).execute()
    assert out["status_code"] == 401 and out["ok"] is False


def test_retry_count_on_flaky_endpoint(http_server):
    k = uuid.uuid4().hex[:8]
    api = RESTClientNode(base_url=http_server.url, resource=f"flaky/{k}", params={"fail": "3"},
                         retry_count=3, retry_backoff=0.01)
    assert api.execute()["data"] == {"ok": True, "calls": 4}


def test_rate_limit_in_async_use(http_server):
    k = uuid.uuid4().hex[:8]
    api = RESTClientNode(base_url=http_server.url, resource=f"flaky/{k}", params={"fail": "0"}, rate_limit=300)

    async def main():
        start = time.monotonic()
        await asyncio.gather(*(api.async_execute() for _ in range(3)))
        return time.monotonic() - start

    elapsed = asyncio.run(main())
    assert len(http_server.state.hits(f"/flaky/{k}")) == 3
    assert elapsed >= 0.39  # 300/min: the third request may not start before 0.4 s, even when fired together


def test_post_body_from_data(http_server):
    api = RESTClientNode(base_url=http_server.url, resource="protected/items", method="POST")
    out = api.execute(data={"name": "gamma"}, **APIKeyNode(api_key=API_KEY).execute())
    assert out["data"]["body"] == {"name": "gamma"} and out["data"]["method"] == "POST"


def test_typo_in_config_is_reported_with_a_suggestion(http_server):
    api = RESTClientNode(name="api", base_url=http_server.url, rate_limt=10)
    with pytest.raises(NodeConfigurationError, match=r"unknown parameter 'rate_limt'.*did you mean 'rate_limit'"):
        api.execute()


def test_saved_form_refers_to_nodes_by_name_and_hides_secrets(http_server):
    auth = oauth(http_server)
    api = RESTClientNode(base_url=http_server.url, auth_type="oauth2", auth_config={"oauth2_node": auth},
                         headers={"Authorization": "Bearer literal-token-123"})
    saved = api.to_dict()["config"]
    assert saved["auth_config"] == {"oauth2_node": "auth"}
    assert saved["headers"] == {"Authorization": "***"}


def test_token_never_shows_in_results_or_errors(http_server, dead_url):
    token = token_for(http_server)
    out = RESTClientNode(base_url=http_server.url, resource="protected/x").execute(token=Secret(token))
    assert token not in repr(out)
    api = RESTClientNode(name="api", base_url=dead_url, headers={"Authorization": "Bearer {token}"})
    with pytest.raises(NodeExecutionError) as info:
        api.execute(token=token)
    assert token not in str(info.value)


def test_workflow_validation_reports_a_config_typo_but_accepts_placeholders(http_server):
    from kailash.errors import WorkflowValidationError
    from kailash.nodes.code.python import PythonCodeNode
    from kailash.runtime import LocalRuntime
    from kailash.workflow import Workflow

    wf = Workflow()
    wf.add_node("api", RESTClientNode(base_url=http_server.url, rate_limt=10))
    with pytest.raises(WorkflowValidationError, match=r"rate_limt"):
        wf.validate()

    wf = Workflow()
    wf.add_node("ids", PythonCodeNode(code="result = 7"))
    wf.add_node("api", RESTClientNode(base_url=http_server.url, resource="protected/users/{user_id}",
                                      auth_type="api_key", auth_config={"api_key": API_KEY}))
    wf.connect("ids", "api", mapping={"result": "user_id"})
    results, _ = LocalRuntime().execute(wf)
    assert results["api"]["data"]["resource"] == "users/7"
