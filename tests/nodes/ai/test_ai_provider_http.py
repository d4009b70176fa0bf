"""Model providers on the one outbound HTTP layer, attacked by a hostile model server.

Two real uvicorn servers: ``model`` (where the provider is pointed: it answers too much,
a gzip bomb, or a redirect) and ``elsewhere`` (another origin that records every
header it is sent and answers like an OpenAI/Anthropic server).
"""

from __future__ import annotations

import gzip
import tracemalloc

import pytest

from kailash.errors import NodeConfigurationError
from kailash.nodes.ai.llm_agent import LLMAgentNode
from kailash.nodes.ai.providers import ChatMessage, ProviderError, get_provider
from tests.servers.fixtures import serve_app

MIB = 1024 * 1024
KEY = "sk-provider-key-7781"
BOMB = gzip.compress(b" " * (256 * MIB), compresslevel=9)  # ~250 KB on the wire, 256 MiB decoded
OPENAI_ANSWER = {"model": "m", "choices": [{"message": {"role": "assistant", "content": "hi"},
                                            "finish_reason": "stop"}]}
ANTHROPIC_ANSWER = {"model": "m", "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn"}


@pytest.fixture(scope="module")
def elsewhere():
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    seen: list[dict[str, str]] = []

    async def openai(request):
        seen.append({k.lower(): v for k, v in request.headers.items()})
        return JSONResponse(OPENAI_ANSWER)

    async def anthropic(request):
        seen.append({k.lower(): v for k, v in request.headers.items()})
        return JSONResponse(ANTHROPIC_ANSWER)

    url, stop = serve_app(Starlette(routes=[Route("/v1/chat/completions", openai, methods=["POST"]),
                                            Route("/v1/messages", anthropic, methods=["POST"])]))
    yield url, seen
    stop()


@pytest.fixture(scope="module")
def model(elsewhere):
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
    from starlette.routing import Route

    other, _ = elsewhere

    async def big(request):
        async def chunks():  # a JSON string that never ends soon enough, with no Content-Length
            yield b'{"model": "m", "choices": [{"message": {"content": "'
            for _ in range(12 * 16):
                yield b"x" * 65536

        return StreamingResponse(chunks(), media_type="application/json")

    async def bomb(request):
        return Response(BOMB, media_type="application/json", headers={"Content-Encoding": "gzip"})

    async def away(request):  # 307 keeps the method and body: a POST that lands on another origin
        return RedirectResponse(f"{other}{request.url.path.removeprefix('/away')}", status_code=307)

    async def home(request):
        return JSONResponse(OPENAI_ANSWER)

    url, stop = serve_app(Starlette(routes=[
        Route("/big/chat/completions", big, methods=["POST"]),
        Route("/bomb/chat/completions", bomb, methods=["POST"]),
        Route("/away/v1/chat/completions", away, methods=["POST"]),
        Route("/away/v1/messages", away, methods=["POST"]),
        Route("/ok/chat/completions", home, methods=["POST"]),
    ]))
    yield url
    stop()


def hi() -> list[ChatMessage]:
    return [ChatMessage(role="user", content="hi")]


def test_an_oversized_answer_is_refused_naming_the_node_and_the_cap(model):
    node = LLMAgentNode(name="chat", provider="openai", model="m", base_url=f"{model}/big", api_key=KEY,
                        max_response_bytes=MIB)
    with pytest.raises(ProviderError, match=r"node 'chat' \(LLMAgentNode\): provider 'openai'.*larger than "
                                            r"max_response_bytes=1048576") as info:
        node.execute(prompt="hi")
    assert info.value.parameter == "max_response_bytes" and KEY not in str(info.value)


def test_the_default_cap_refuses_a_12_mib_answer(model):
    p = get_provider("openai", model="m", base_url=f"{model}/big", api_key=KEY)
    with pytest.raises(ProviderError, match=r"max_response_bytes=10485760"):
        p.chat(hi())
    assert get_provider("openai", model="m", base_url=f"{model}/ok").chat(hi()).content == "hi"


def test_a_gzip_bomb_never_expands_past_the_cap(model):
    p = get_provider("openai", model="m", base_url=f"{model}/bomb", max_response_bytes=MIB, owner="node 'x'")
    tracemalloc.start()
    try:
        with pytest.raises(ProviderError, match=r"node 'x': provider 'openai'.*decompressed past 1048576 bytes"):
            p.chat(hi())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * MIB


def test_a_bad_cap_is_a_configuration_error():
    with pytest.raises(NodeConfigurationError, match=r"node 'x': parameter 'max_response_bytes' must be a positive"):
        get_provider("openai", base_url="http://127.0.0.1:9/v1", max_response_bytes=0, owner="node 'x'")


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_a_redirect_to_another_origin_does_not_carry_the_api_key(model, elsewhere, kind):
    _, seen = elsewhere
    seen.clear()
    base = f"{model}/away/v1" if kind == "openai" else f"{model}/away"
    answer = get_provider(kind, model="m", base_url=base, api_key=KEY).chat(hi())
    assert answer.content == "hi"  # the redirect was followed ...
    assert len(seen) == 1  # ... to the other origin, which got the request but not the key
    assert "authorization" not in seen[0] and "x-api-key" not in seen[0]
    assert not any(KEY in v for v in seen[0].values())


@pytest.fixture
def flaky():
    """A model server that answers 429 (Retry-After: 0), then 503, then the answer; records each client port."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    calls: list[tuple[str, int]] = []

    async def chat(request):
        kind = request.path_params["kind"]
        calls.append((kind, request.client.port))
        n = sum(1 for k, _ in calls if k == kind)
        if kind == "flaky" and n % 3 == 1:
            return JSONResponse({"error": "slow down"}, status_code=429, headers={"Retry-After": "0"})
        if kind == "flaky" and n % 3 == 2:
            return JSONResponse({"error": "overloaded"}, status_code=503)
        if kind == "down":
            return JSONResponse({"error": "down"}, status_code=500)
        return JSONResponse(OPENAI_ANSWER)

    url, stop = serve_app(Starlette(routes=[Route("/{kind}/chat/completions", chat, methods=["POST"])]))
    yield url, calls
    stop()


def test_a_provider_retries_429_and_5xx_like_the_http_nodes(flaky):
    url, calls = flaky
    node = LLMAgentNode(name="chat", provider="openai", model="m", base_url=f"{url}/flaky", api_key=KEY)
    assert node.execute(prompt="hi")["response"] == "hi"
    assert [k for k, _ in calls] == ["flaky"] * 3  # 429, 503, then the answer


def test_retries_are_bounded_and_the_error_says_how_many_attempts(flaky):
    url, calls = flaky
    node = LLMAgentNode(name="chat", provider="openai", model="m", base_url=f"{url}/down", api_key=KEY, retries=1)
    with pytest.raises(ProviderError, match=r"node 'chat' \(LLMAgentNode\): provider 'openai' answered HTTP 500 "
                                            r"at .* after 2 attempts") as info:
        node.execute(prompt="hi")
    assert len(calls) == 2 and KEY not in str(info.value)
    with pytest.raises(NodeConfigurationError, match=r"parameter 'retries' expects int >= 0, got -1"):
        LLMAgentNode(provider="openai", base_url=f"{url}/down", retries=-1).execute(prompt="hi")


def test_runs_of_model_nodes_reuse_one_connection(flaky):
    url, calls = flaky
    for i in range(4):  # a new node (and provider) each time, as a workflow run builds them
        node = LLMAgentNode(name=f"chat{i}", provider="openai", model="m", base_url=f"{url}/ok", api_key=KEY)
        assert node.execute(prompt="hi")["response"] == "hi"
    ports = {port for _, port in calls}
    assert len(calls) == 4 and len(ports) == 1  # one pooled connection, not four
