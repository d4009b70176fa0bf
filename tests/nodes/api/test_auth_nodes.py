"""OAuth2Node and APIKeyNode against the local token endpoint."""

from __future__ import annotations

import os
import pickle

import pytest

from kailash.errors import NodeConfigurationError, NodeExecutionError
from kailash.nodes.api import APIKeyNode, OAuth2Node
from kailash.nodes.api.auth import CachedToken
from kailash.security.secrets import Secret
from tests.servers.http_app import CLIENT_ID, CLIENT_SECRET


def oauth(server, **kw) -> OAuth2Node:
    cfg = {"token_url": f"{server.url}/token", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    cfg.update(kw)
    return OAuth2Node(**cfg)


def test_client_credentials_flow_returns_a_secret_token(http_server):
    out = oauth(http_server, name="auth").execute()
    assert isinstance(out["token"], Secret)
    assert out["token"].reveal() == http_server.state.tokens_issued[-1]
    assert str(out["token"]) == "***" and "tok-" not in repr(out)
    assert out["token_type"] == "Bearer" and 3500 < out["expires_in"] <= 3600
    assert out["auth_headers"]["Authorization"].reveal() == f"Bearer {out['token'].reveal()}"
    assert out["from_cache"] is False


def test_token_is_cached_across_runs_and_instances(http_server):
    before = len(http_server.state.tokens_issued)
    first = oauth(http_server).execute()
    second = oauth(http_server).execute()  # another node, same client
    assert second["from_cache"] is True and second["token"] == first["token"]
    assert len(http_server.state.tokens_issued) == before + 1
    other_scope = oauth(http_server, scope="read:data").execute()
    assert other_scope["token"] != first["token"] and other_scope["scope"] == "read:data"


def test_token_close_to_expiry_is_refreshed(http_server, monkeypatch):
    monkeypatch.setattr(http_server.state, "token_lifetime", 0)  # expires immediately
    node = oauth(http_server)
    a, b = node.execute(), node.execute()
    assert a["token"] != b["token"] and b["from_cache"] is False


def test_refresh_margin_is_at_most_a_tenth_of_the_lifetime():
    token = CachedToken(token=Secret("t"), token_type="Bearer", obtained_at=1000.0, expires_at=1010.0)
    assert token.usable(60, now=1008.9)  # margin capped at 1 s for a 10 s token
    assert not token.usable(60, now=1009.1)
    long = CachedToken(token=Secret("t"), token_type="Bearer", obtained_at=0.0, expires_at=3600.0)
    assert long.usable(60, now=3539.0) and not long.usable(60, now=3541.0)


def test_wrong_secret_is_rejected_and_never_served_from_cache(http_server):
    oauth(http_server).execute()  # a good token is cached for this client id
    bad = oauth(http_server, name="auth", client_secret="wrong-secret-value")
    with pytest.raises(NodeExecutionError, match=r"node 'auth' \(OAuth2Node\): the token endpoint "
                                                 r"http://127\.0\.0\.1:\d+/token rejected the request for client_id "
                                                 r"'test-client' \(HTTP 401 invalid_client\); check client_id") as info:
        bad.execute()
    assert "wrong-secret-value" not in str(info.value) and CLIENT_SECRET not in str(info.value)


def test_basic_auth_method(http_server):
    assert oauth(http_server, auth_method="basic").execute()["token"].reveal().startswith("tok-")
    with pytest.raises(NodeConfigurationError, match=r"'auth_method' expects one of 'body', 'basic', got 'digest'"):
        oauth(http_server, auth_method="digest").execute()


def test_token_endpoint_that_does_not_answer_json(http_server):
    node = OAuth2Node(name="auth", token_url=f"{http_server.url}/token-broken", client_id="c", client_secret="s-123")
    with pytest.raises(NodeExecutionError, match=r"answered 200 but the body is not JSON"):
        node.execute()


def test_unreachable_token_endpoint(dead_url):
    node = OAuth2Node(name="auth", token_url=f"{dead_url}/token", client_id="c", client_secret="s3cr3t-xyz")
    with pytest.raises(NodeExecutionError, match=r"node 'auth' \(OAuth2Node\): cannot connect") as info:
        node.execute()
    assert "s3cr3t-xyz" not in str(info.value)


def test_secret_from_environment_is_wrapped_and_saved_as_a_reference(http_server, monkeypatch):
    monkeypatch.setenv("TEST_OAUTH_SECRET", CLIENT_SECRET)
    node = oauth(http_server, client_secret=os.getenv("TEST_OAUTH_SECRET"))
    assert node.config["client_secret"] == Secret(CLIENT_SECRET)
    assert node.to_dict()["config"]["client_secret"] == "${TEST_OAUTH_SECRET}"
    assert CLIENT_SECRET not in repr(node.to_dict())
    assert node.execute()["token"].reveal().startswith("tok-")


def test_missing_secret_from_unset_environment_is_reported(http_server, monkeypatch):
    monkeypatch.delenv("TEST_UNSET_SECRET", raising=False)
    node = oauth(http_server, name="auth", client_secret=os.getenv("TEST_UNSET_SECRET"))
    with pytest.raises(NodeConfigurationError, match=r"(?s)node 'auth'.*parameter 'client_secret' is required"):
        node.execute()


def test_oauth_node_pickles(http_server):
    node = oauth(http_server)
    node.execute()
    assert pickle.loads(pickle.dumps(node)).execute()["from_cache"] is True


def test_api_key_in_a_header_with_prefix():
    out = APIKeyNode(api_key="k-123456", key_name="Authorization", prefix="Bearer").execute()
    assert out["auth_headers"]["Authorization"].reveal() == "Bearer k-123456"
    assert out["auth_params"] == {} and out["placement"] == "header"
    assert "k-123456" not in repr(out)


def test_api_key_defaults_and_query_placement():
    assert list(APIKeyNode(api_key="k-123456").execute()["auth_headers"]) == ["X-API-Key"]
    out = APIKeyNode(api_key="k-123456", placement="query").execute()
    assert out["auth_headers"] == {} and out["auth_params"]["api_key"].reveal() == "k-123456"


def test_api_key_bad_placement_and_missing_key():
    with pytest.raises(NodeConfigurationError, match=r"node 'key' \(APIKeyNode\): parameter 'placement' must be"):
        APIKeyNode(name="key", api_key="k-123456", placement="cookie").execute()
    with pytest.raises(NodeConfigurationError, match=r"parameter 'api_key' is required"):
        APIKeyNode(name="key").execute()


def test_api_key_config_is_secret():
    node = APIKeyNode(api_key="k-abcdef12")
    assert node.to_dict()["config"]["api_key"] == "***"
