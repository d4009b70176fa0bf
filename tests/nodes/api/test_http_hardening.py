"""Attacks on the HTTP nodes from a hostile server: huge bodies, gzip bombs, and
redirects that try to collect credentials on another origin.

Two real uvicorn servers on two ports: ``origin`` (the API the node means to call)
and ``elsewhere`` (another origin a redirect points to, which records every header
it is sent).
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import threading
import tracemalloc
from typing import Any

import pytest

from kailash.errors import NodeConfigurationError, NodeExecutionError
from kailash.nodes.api import AsyncHTTPRequestNode, HTTPRequestNode
from kailash.nodes.api.auth import APIKeyNode, OAuth2Node
from kailash.nodes.api.rest import RESTClientNode
from kailash.security.secrets import Secret

MIB = 1024 * 1024
BOMB = gzip.compress(b"\0" * (256 * MIB), compresslevel=9)  # ~250 KB on the wire, 256 MiB decoded


def _serve(app: Any):
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        threading.Event().wait(0.02)
    assert server.started, "test server did not start"

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()

    return f"http://127.0.0.1:{port}", stop


@pytest.fixture(scope="module")
def elsewhere():
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    seen: list[dict[str, str]] = []

    async def collect(request):
        seen.append({k.lower(): v for k, v in request.headers.items()})
        return JSONResponse({"collected": True})

    url, stop = _serve(Starlette(routes=[Route("/collect", collect, methods=["GET", "POST"])]))
    yield url, seen
    stop()


@pytest.fixture(scope="module")
def origin(elsewhere):
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
    from starlette.routing import Route

    other, _ = elsewhere

    async def away(request):
        return RedirectResponse(f"{other}/collect", status_code=int(request.query_params.get("code", 302)))

    async def home(request):
        return RedirectResponse("/echo", status_code=302)

    async def echo(request):
        return JSONResponse({k.lower(): v for k, v in request.headers.items()})

    async def big(request):
        size = int(request.query_params["mib"]) * MIB

        async def chunks():
            for _ in range(size // 65536):
                yield b"x" * 65536

        return StreamingResponse(chunks(), media_type="application/octet-stream")  # no Content-Length

    async def declared(request):
        return Response(b"x" * (3 * MIB), media_type="application/octet-stream")

    async def bomb(request):
        return Response(BOMB, media_type="text/plain", headers={"Content-Encoding": "gzip"})

    async def bomb_redirect(request):
        return Response(BOMB, status_code=302, headers={"Location": "/echo", "Content-Encoding": "gzip"})

    async def token_bomb(request):
        return Response(BOMB, media_type="application/json", headers={"Content-Encoding": "gzip"})

    async def small_gzip(request):
        return Response(gzip.compress(b'{"ok": true}'), media_type="application/json",
                        headers={"Content-Encoding": "gzip"})

    routes = [Route("/away", away), Route("/home", home), Route("/echo", echo), Route("/big", big),
              Route("/declared", declared), Route("/bomb", bomb), Route("/bomb-redirect", bomb_redirect),
              Route("/small-gzip", small_gzip), Route("/token-bomb", token_bomb, methods=["POST"])]
    url, stop = _serve(Starlette(routes=routes))
    yield url
    stop()


CREDENTIALS = {
    "Authorization": "Bearer auth-value-111",
    "X-API-Key": "api-key-value-222",
    "X-Auth-Token": "auth-token-value-333",
    "Cookie": "session=cookie-value-444",
    "Proxy-Authorization": "Basic proxy-value-555",
}


# -- redirects to another origin --------------------------------------------------------

@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_credentials_are_dropped_on_a_redirect_to_another_origin(origin, elsewhere, code):
    _, seen = elsewhere
    seen.clear()
    out = HTTPRequestNode(url=f"{origin}/away?code={code}", headers=dict(CREDENTIALS, **{"X-Trace": "keep"})).execute()
    assert out["data"] == {"collected": True}
    got = seen[-1]
    leaked = [v for v in CREDENTIALS.values() if any(v.split("=")[-1].split()[-1] in x for x in got.values())]
    assert leaked == [], got
    assert got.get("x-trace") == "keep"  # ordinary headers still travel


def test_same_origin_redirects_keep_credentials(origin):
    out = HTTPRequestNode(url=f"{origin}/home", headers={"X-API-Key": "api-key-value-222"}).execute()
    assert out["data"]["x-api-key"] == "api-key-value-222"


def test_secret_valued_declared_and_custom_token_headers_are_dropped(origin, elsewhere):
    _, seen = elsewhere
    seen.clear()
    HTTPRequestNode(url=f"{origin}/away", headers={"X-Vendor-Sig": Secret("vendor-sig-666"),
                                                   "X-Tenant": "tenant-777", "X-Session-Id": "session-888"},
                    secret_headers=["X-Tenant"]).execute()
    assert not {"x-vendor-sig", "x-tenant", "x-session-id"} & set(seen[-1]), seen[-1]
    # a RESTClientNode filling a custom header from a token, and an APIKeyNode's own header name
    seen.clear()
    RESTClientNode(base_url=origin, resource="/away", headers={"X-Custom-Token": "{token}"},
                   raise_for_status=False).execute(token="rest-token-999")
    keys = APIKeyNode(api_key="apikey-node-000", key_name="X-Partner").execute()
    RESTClientNode(base_url=origin, resource="/away", raise_for_status=False).execute(
        auth_headers=keys["auth_headers"])
    assert all("x-custom-token" not in h and "x-partner" not in h for h in seen), seen


def test_async_node_drops_credentials_too(origin, elsewhere):
    _, seen = elsewhere
    seen.clear()
    node = AsyncHTTPRequestNode(url=f"{origin}/away", headers=dict(CREDENTIALS))
    asyncio.run(node.async_run(url=f"{origin}/away", headers=dict(CREDENTIALS)))
    assert not set(k.lower() for k in CREDENTIALS) & set(seen[-1]), seen[-1]


# -- response size ------------------------------------------------------------------------

def test_a_streamed_body_over_the_cap_fails_naming_node_and_parameter(origin):
    node = HTTPRequestNode(name="fetch", url=f"{origin}/big?mib=4", max_response_bytes=MIB)
    with pytest.raises(NodeExecutionError, match=r"node 'fetch' \(HTTPRequestNode\).*larger than "
                                                 r"max_response_bytes=1048576") as info:
        node.execute()
    assert info.value.parameter == "max_response_bytes"
    assert len(HTTPRequestNode(url=f"{origin}/big?mib=4", max_response_bytes=5 * MIB,
                               response_format="bytes").execute()["data"]) == 4 * MIB


def test_the_default_cap_applies_without_configuration(origin):
    default = HTTPRequestNode(url="http://x").get_parameters()["max_response_bytes"].default
    assert default == 10 * MIB
    with pytest.raises(NodeExecutionError, match="max_response_bytes"):
        HTTPRequestNode(url=f"{origin}/big?mib=12").execute()


def test_a_declared_content_length_over_the_cap_is_refused_before_reading(origin):
    with pytest.raises(NodeExecutionError, match=r"declares 3145728 bytes"):
        HTTPRequestNode(url=f"{origin}/declared", max_response_bytes=MIB).execute()


def test_a_gzip_bomb_never_expands_past_the_cap(origin):
    node = HTTPRequestNode(name="fetch", url=f"{origin}/bomb", max_response_bytes=MIB)
    tracemalloc.start()
    try:
        with pytest.raises(NodeExecutionError, match=r"max_response_bytes=1048576: it decompressed past"):
            node.execute()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * MIB, f"decoding allocated {peak / MIB:.0f} MiB"  # 256 MiB before the cap existed


def test_a_redirect_body_is_never_read(origin):
    node = HTTPRequestNode(url=f"{origin}/bomb-redirect", max_response_bytes=MIB)
    tracemalloc.start()
    try:
        out = node.execute()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out["status_code"] == 200 and "host" in out["data"]
    assert peak < 8 * MIB, f"the redirect's body allocated {peak / MIB:.0f} MiB"


def test_a_gzip_bomb_is_capped_in_the_async_node(origin):
    node = AsyncHTTPRequestNode(name="fetch", url=f"{origin}/bomb", max_response_bytes=MIB)
    with pytest.raises(NodeExecutionError, match="max_response_bytes"):
        asyncio.run(node.async_run(url=f"{origin}/bomb", max_response_bytes=MIB))


def test_a_rest_client_body_is_capped(origin):
    with pytest.raises(NodeExecutionError, match=r"\(RESTClientNode\).*max_response_bytes"):
        RESTClientNode(name="api", base_url=origin, resource="/bomb", max_response_bytes=MIB).execute()


def test_small_compressed_bodies_still_decode(origin):
    assert HTTPRequestNode(url=f"{origin}/small-gzip").execute()["data"] == {"ok": True}


def test_a_bad_cap_is_a_configuration_error():
    with pytest.raises(NodeConfigurationError, match=r"'max_response_bytes' expects int >= 1, got 0"):
        HTTPRequestNode(name="f", url="http://127.0.0.1:9/", max_response_bytes=0).execute()


def test_a_token_endpoint_cannot_bomb_the_oauth2_node(origin):
    node = OAuth2Node(name="auth", token_url=f"{origin}/token-bomb", client_id="c", client_secret="s-123456")
    tracemalloc.start()
    try:
        with pytest.raises(NodeExecutionError, match=r"node 'auth' \(OAuth2Node\): the token endpoint .* more than "
                                                     r"1048576 bytes"):
            node.execute()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * MIB
