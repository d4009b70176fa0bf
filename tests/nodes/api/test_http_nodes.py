"""HTTPRequestNode and AsyncHTTPRequestNode against the local uvicorn test server."""

from __future__ import annotations

import asyncio
import pickle
import time
import uuid

import pytest

from kailash.errors import KailashError, NodeConfigurationError, NodeExecutionError, NodeTimeoutError
from kailash.nodes.api import AsyncHTTPRequestNode, HTTPRequestNode
from kailash.nodes.base_async import AsyncNode


def key() -> str:
    return uuid.uuid4().hex[:8]


def test_get_json_is_parsed(http_server):
    out = HTTPRequestNode(url=f"{http_server.url}/echo?a=1", params={"b": "2"}).execute()
    assert out["status_code"] == 200 and out["ok"] is True
    assert out["data"]["query"] == {"a": "1", "b": "2"}  # params merge with the URL's own query
    assert out["response_headers"]["content-type"] == "application/json"


def test_post_sends_data_as_json_and_custom_headers(http_server):
    node = HTTPRequestNode(url=f"{http_server.url}/echo", method="post", headers={"X-Trace": "t1"})
    out = node.execute(data={"name": "alpha", "n": [1, 2]})
    assert out["data"]["method"] == "POST"
    assert out["data"]["body"] == {"name": "alpha", "n": [1, 2]}
    assert out["data"]["headers"]["x-trace"] == "t1"
    assert out["data"]["headers"]["content-type"] == "application/json"


def test_query_alias_and_raw_text_body(http_server):
    out = HTTPRequestNode(url=f"{http_server.url}/echo", method="PUT", query={"q": "x"}).execute(data="raw text")
    assert out["data"]["query"] == {"q": "x"}
    assert out["data"]["body"] == "raw text"


def test_text_and_bytes_bodies(http_server):
    assert HTTPRequestNode(url=f"{http_server.url}/text").execute()["data"] == "plain text body"
    out = HTTPRequestNode(url=f"{http_server.url}/text", response_format="bytes").execute()
    assert out["data"] == b"plain text body"


def test_body_that_claims_json_but_is_not_fails_clearly(http_server):
    node = HTTPRequestNode(name="fetch", url=f"{http_server.url}/badjson")
    with pytest.raises(NodeExecutionError, match=r"node 'fetch' \(HTTPRequestNode\).*not valid JSON.*'\{not json'"):
        node.execute()
    # asking for text accepts it
    assert HTTPRequestNode(url=f"{http_server.url}/badjson", response_format="text").execute()["data"] == "{not json"


def test_json_expected_but_text_received(http_server):
    with pytest.raises(NodeExecutionError, match=r"content-type text/plain\) is not valid JSON"):
        HTTPRequestNode(name="fetch", url=f"{http_server.url}/text", response_format="json").execute()


def test_error_status_is_output_unless_raise_for_status(http_server):
    out = HTTPRequestNode(url=f"{http_server.url}/status/404").execute()
    assert out["status_code"] == 404 and out["ok"] is False and out["data"] == {"status": 404}
    with pytest.raises(NodeExecutionError, match=r"node 'get' \(HTTPRequestNode\): GET .*/status/404 returned 404"):
        HTTPRequestNode(name="get", url=f"{http_server.url}/status/404", raise_for_status=True).execute()


def test_retries_5xx_until_success(http_server):
    k = key()
    node = HTTPRequestNode(url=f"{http_server.url}/flaky/{k}?fail=2", retry_count=3, retry_backoff=0.01)
    out = node.execute()
    assert out["status_code"] == 200 and out["data"] == {"ok": True, "calls": 3}
    assert http_server.state.flaky_calls[k] == 3


def test_retries_run_out_and_the_last_response_is_reported(http_server):
    k = key()
    node = HTTPRequestNode(name="f", url=f"{http_server.url}/flaky/{k}?fail=9&status=502", retry_count=2,
                           retry_backoff=0.01, raise_for_status=True)
    with pytest.raises(NodeExecutionError, match=r"returned 502 Bad Gateway after 3 attempts"):
        node.execute()
    assert http_server.state.flaky_calls[k] == 3


def test_429_honours_retry_after(http_server):
    k = key()
    node = HTTPRequestNode(url=f"{http_server.url}/flaky/{k}?fail=1&status=429&retry_after=1",
                           retry_count=1, retry_backoff=0.01)
    assert node.execute()["status_code"] == 200
    first, second = http_server.state.hits(f"/flaky/{k}")
    assert second - first >= 0.9  # waited for Retry-After (1 s), not the 10 ms backoff


def test_no_retry_without_retry_count(http_server):
    k = key()
    out = HTTPRequestNode(url=f"{http_server.url}/flaky/{k}?fail=1").execute()
    assert out["status_code"] == 503 and http_server.state.flaky_calls[k] == 1


def test_unreachable_host_is_a_clear_error(dead_url):
    node = HTTPRequestNode(name="down", url=f"{dead_url}/x", retry_count=2, retry_backoff=0.01)
    with pytest.raises(NodeExecutionError, match=r"node 'down' \(HTTPRequestNode\): cannot connect to "
                                                 r"http://127\.0\.0\.1:\d+/x after 3 attempts") as info:
        node.execute()
    assert info.value.node_id == "down" and info.value.parameter == "url"
    assert isinstance(info.value, KailashError)


def test_tls_error_names_the_problem_and_a_private_ca_fixes_it(https_server):
    node = HTTPRequestNode(name="tls", url=f"{https_server.url}/text")
    with pytest.raises(NodeExecutionError, match=r"node 'tls' \(HTTPRequestNode\): TLS error talking to "
                                                 r"https://127\.0\.0\.1:\d+/text.*CERTIFICATE_VERIFY_FAILED"):
        node.execute()
    trusted = HTTPRequestNode(url=f"{https_server.url}/text", verify_ssl=https_server.cert_file)
    assert trusted.execute()["data"] == "plain text body"


def test_timeout_is_a_node_timeout_error(http_server):
    node = HTTPRequestNode(name="slow", url=f"{http_server.url}/slow?delay=2", timeout=0.2)
    with pytest.raises(NodeTimeoutError, match=r"node 'slow' .* got no response within 0\.2 s"):
        node.execute()


def test_bad_url_and_bad_method_are_configuration_errors():
    with pytest.raises(NodeConfigurationError, match=r"must start with http:// or https://"):
        HTTPRequestNode(name="u", url="ftp://example.com/x").execute()
    with pytest.raises(NodeConfigurationError, match=r"parameter 'method' must be one of"):
        HTTPRequestNode(name="m", url="http://127.0.0.1/", method="FETCH").execute()
    with pytest.raises(NodeConfigurationError, match=r"parameter 'url' is required"):
        HTTPRequestNode().execute()


def test_secrets_never_appear_in_errors(dead_url, http_server):
    secret = "sk-live-0123456789abcdef"
    node = HTTPRequestNode(name="s", url=f"{dead_url}/x?api_key={secret}",
                           headers={"Authorization": f"Bearer {secret}"})
    with pytest.raises(NodeExecutionError) as info:
        node.execute()
    assert secret not in str(info.value)
    # a server that echoes the credential back in an error body
    node = HTTPRequestNode(name="s", url=f"{http_server.url}/flaky/{key()}?fail=1&status=500",
                           headers={"Authorization": f"Bearer {secret}"}, raise_for_status=True)
    with pytest.raises(NodeExecutionError) as info:
        node.execute()
    assert secret not in str(info.value)


def test_literal_credential_headers_are_kept_secret_in_config(http_server):
    node = HTTPRequestNode(url=f"{http_server.url}/echo", headers={"X-API-Key": "k-12345678", "X-Other": "v"})
    assert str(node.config["headers"]["X-API-Key"]) == "***"
    assert node.to_dict()["config"]["headers"] == {"X-API-Key": "***", "X-Other": "v"}
    sent = node.execute()["data"]["headers"]
    assert sent["x-api-key"] == "k-12345678"  # revealed only on the wire


def test_connections_are_reused_across_runs(http_server):
    node = HTTPRequestNode(url=f"{http_server.url}/echo")
    node.execute()
    clients = node._http()
    node.execute()
    assert node._http() is clients and len(clients._sync) == 1


def test_rate_limit_spaces_requests(http_server):
    k = key()
    node = HTTPRequestNode(url=f"{http_server.url}/flaky/{k}?fail=0", rate_limit=600)  # one per 0.1 s
    start = time.monotonic()
    for _ in range(4):
        node.execute()
    elapsed = time.monotonic() - start
    assert len(http_server.state.hits(f"/flaky/{k}")) == 4
    assert elapsed >= 0.29  # the 4th request may not start before 0.3 s


def test_rate_limit_must_be_positive():
    with pytest.raises(NodeConfigurationError, match=r"'rate_limit' must be a positive number"):
        HTTPRequestNode(url="http://127.0.0.1/", rate_limit=0).execute()


def test_node_pickles_after_use(http_server):
    node = HTTPRequestNode(url=f"{http_server.url}/echo", rate_limit=6000)
    node.execute()
    copy = pickle.loads(pickle.dumps(node))
    assert copy.execute()["status_code"] == 200


def test_async_node_is_an_async_node_and_runs_concurrently(http_server):
    assert issubclass(AsyncHTTPRequestNode, AsyncNode) and AsyncHTTPRequestNode.is_async
    group = key()
    nodes = [AsyncHTTPRequestNode(url=f"{http_server.url}/slow?delay=0.6&group={group}&source=s{i}")
             for i in range(3)]

    async def main():
        return await asyncio.gather(*(n.async_execute() for n in nodes))

    outs = asyncio.run(main())
    assert [o["data"]["source"] for o in outs] == ["s0", "s1", "s2"]
    assert http_server.state.max_in_flight[group] == 3  # all three were in flight together


def test_async_node_direct_execute_and_errors(http_server, dead_url):
    node = AsyncHTTPRequestNode(name="a", url=f"{http_server.url}/echo")
    assert node.execute()["data"]["method"] == "GET"

    async def fail():
        await AsyncHTTPRequestNode(name="a", url=f"{dead_url}/x").async_execute()

    with pytest.raises(NodeExecutionError, match=r"node 'a' \(AsyncHTTPRequestNode\): cannot connect"):
        asyncio.run(fail())


def test_async_retry_and_reuse_within_a_loop(http_server):
    k = key()
    node = AsyncHTTPRequestNode(url=f"{http_server.url}/flaky/{k}?fail=1", retry_count=1, retry_backoff=0.01)

    async def main():
        first = await node.async_execute()
        second = await node.async_execute()
        return first, second, len(node._http()._async)

    first, second, loops = asyncio.run(main())
    assert first["data"]["calls"] == 2 and second["data"]["calls"] == 3 and loops == 1
