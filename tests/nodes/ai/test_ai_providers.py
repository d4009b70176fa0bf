"""Model providers: the offline default, and each HTTP provider against a local server."""

from __future__ import annotations

import pytest

from kailash.errors import NodeConfigurationError
from kailash.nodes.ai.providers import ChatMessage, OfflineProvider, ProviderError, ToolSpec, get_provider
from kailash.security.secrets import Secret

TIME_TOOL = ToolSpec(
    name="get_current_time", description="Get current time in a specific timezone",
    input_schema={"type": "object", "required": ["timezone"],
                  "properties": {"timezone": {"type": "string", "description":
                                              "IANA timezone name (e.g., 'America/New_York', 'Europe/London'). "
                                              "Use 'UTC' as local timezone if no timezone provided by the user."}}},
)
QUOTE_TOOL = ToolSpec(name="get_stock_quotes", description="Get stock quotes for ticker symbols",
                      input_schema={"type": "object", "required": ["symbols"],
                                    "properties": {"symbols": {"type": "array", "items": {"type": "string"}}}})
ALLOC_TOOL = ToolSpec(name="recommend_allocation", description="Recommend a portfolio allocation for a risk profile",
                      input_schema={"type": "object", "properties": {
                          "risk_profile": {"enum": ["conservative", "moderate", "aggressive"], "default": "moderate"}}})


def user(text: str) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=text)]


# -- offline -----------------------------------------------------------------------------
def test_offline_plans_relevant_tools_with_arguments_from_the_request():
    p = OfflineProvider()
    r = p.chat(user("What time is it in Asia/Tokyo right now?"), tools=[QUOTE_TOOL, TIME_TOOL])
    assert [(c.name, c.arguments) for c in r.tool_calls] == [("get_current_time", {"timezone": "Asia/Tokyo"})]
    r = p.chat(user("What is the current time?"), tools=[TIME_TOOL])
    assert r.tool_calls[0].arguments == {"timezone": "UTC"}  # the schema's stated fallback
    r = p.chat(user("Get stock quotes for AAPL and MSFT"), tools=[QUOTE_TOOL, TIME_TOOL])
    assert [(c.name, c.arguments) for c in r.tool_calls] == [("get_stock_quotes", {"symbols": ["AAPL", "MSFT"]})]


def test_offline_fills_enums_and_explicit_values():
    p = OfflineProvider()
    r = p.chat(user("Recommend an aggressive portfolio allocation"), tools=[ALLOC_TOOL])
    assert r.tool_calls[0].arguments == {"risk_profile": "aggressive"}
    r = p.chat(user("recommend allocation with risk_profile=conservative"), tools=[ALLOC_TOOL])
    assert r.tool_calls[0].arguments == {"risk_profile": "conservative"}
    r = p.chat(user("Recommend an allocation"), tools=[ALLOC_TOOL])
    assert r.tool_calls[0].arguments == {}  # optional with a default: left to the tool


def test_offline_calls_no_unrelated_tool_and_summarises_tool_results():
    p = OfflineProvider()
    r = p.chat(user("Write a haiku about autumn"), tools=[TIME_TOOL, QUOTE_TOOL])
    assert r.tool_calls == () and "haiku" in r.content
    convo = user("Get stock quotes for AAPL") + [
        ChatMessage(role="assistant", tool_calls=p.chat(user("Get stock quotes for AAPL"), tools=[QUOTE_TOOL]).tool_calls),
        ChatMessage(role="tool", name="get_stock_quotes", tool_call_id="call_0_get_stock_quotes",
                    content='{"AAPL": 227.5}'),
    ]
    final = p.chat(convo, tools=[QUOTE_TOOL])
    assert final.tool_calls == ()
    assert "- get_stock_quotes: AAPL: 227.5" in final.content


def test_offline_is_deterministic_and_recommends_when_asked():
    p = OfflineProvider()
    msgs = [ChatMessage(role="system", content="Sales rose 12% in the north region. Costs were flat."),
            ChatMessage(role="user", content="Recommend a strategy for north region sales")]
    a, b = p.chat(msgs), OfflineProvider().chat(msgs)
    assert a == b
    assert "Sales rose 12% in the north region" in a.content
    assert "Recommendation:" in a.content


# -- configuration -------------------------------------------------------------------------
def test_get_provider_defaults_and_environment(monkeypatch):
    monkeypatch.delenv("KAILASH_LLM_PROVIDER", raising=False)
    assert get_provider().name == "offline"
    monkeypatch.setenv("KAILASH_LLM_PROVIDER", "vllm")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    p = get_provider(model="qwen")
    assert p.name == "openai" and p.url == "http://127.0.0.1:9/v1/chat/completions"
    assert isinstance(p.api_key, Secret) and p.api_key.env == "OPENAI_API_KEY"
    assert "sk-from-env" not in repr(p)
    monkeypatch.setenv("OLLAMA_HOST", "127.0.0.1:11500")
    assert get_provider("ollama").url == "http://127.0.0.1:11500/api/chat"


def test_get_provider_errors_name_the_owner(monkeypatch):
    with pytest.raises(NodeConfigurationError,
                       match=r"node 'x': parameter 'provider' got unknown provider 'olama'.*did you mean ollama"):
        get_provider("olama", owner="node 'x'")
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(NodeConfigurationError, match="needs an API key: set ANTHROPIC_API_KEY"):
        get_provider("anthropic")


# -- HTTP providers against the local server ---------------------------------------------------
@pytest.mark.parametrize("kind", ["openai", "ollama", "anthropic"])
def test_http_provider_tool_round_trip(llm_server, kind):
    base = f"{llm_server.url}/v1" if kind == "openai" else llm_server.url
    p = get_provider(kind, model="tiny", base_url=base, api_key=llm_server.key, timeout=5)
    first = p.chat([ChatMessage(role="system", content="be brief")] + user("time please"), tools=[TIME_TOOL])
    assert [(c.name, c.arguments) for c in first.tool_calls] == [("get_current_time", {"timezone": "UTC"})]
    assert first.provider == kind and first.usage
    convo = [ChatMessage(role="system", content="be brief")] + user("time please") + [
        first.to_message(), ChatMessage(role="tool", tool_call_id=first.tool_calls[0].id, name="get_current_time",
                                        content="12:00 UTC")]
    second = p.chat(convo, tools=[TIME_TOOL], temperature=0.0, max_tokens=50)
    assert second.tool_calls == () and second.content == "echo: 12:00 UTC"
    body = llm_server.requests[-1]["body"]
    if kind == "openai":
        assert body["tools"][0]["function"]["name"] == "get_current_time"
        assert body["messages"][-1] == {"role": "tool", "tool_call_id": first.tool_calls[0].id, "content": "12:00 UTC"}
        assert body["messages"][-2]["tool_calls"][0]["function"]["arguments"] == '{"timezone": "UTC"}'
        assert body["max_tokens"] == 50
    elif kind == "ollama":
        assert body["stream"] is False and body["options"] == {"temperature": 0.0, "num_predict": 50}
        assert body["messages"][-2]["tool_calls"] == [{"function": {"name": "get_current_time",
                                                                    "arguments": {"timezone": "UTC"}}}]
    else:
        assert body["system"] == "be brief" and body["max_tokens"] == 50
        assert body["tools"][0]["input_schema"] == TIME_TOOL.input_schema
        assert body["messages"][-1]["content"][0] == {"type": "tool_result", "tool_use_id": "toolu_1",
                                                      "content": "12:00 UTC"}


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_wrong_key_is_reported_without_the_key(llm_server, kind):
    base = f"{llm_server.url}/v1" if kind == "openai" else llm_server.url
    p = get_provider(kind, model="tiny", base_url=base, api_key="sk-wrong-secret", timeout=5)
    with pytest.raises(ProviderError, match=rf"provider '{kind}' answered HTTP 401.*check the API key") as info:
        p.chat(user("hi"))
    assert "sk-wrong-secret" not in str(info.value)


def test_timeout_malformed_json_and_unreachable(llm_server, dead_url):
    slow = get_provider("openai", model="slow", base_url=f"{llm_server.url}/v1", api_key=llm_server.key, timeout=0.5)
    with pytest.raises(ProviderError, match=r"provider 'openai' timed out after 0.5s"):
        slow.chat(user("hi"))
    garbage = get_provider("ollama", model="garbage", base_url=llm_server.url)
    with pytest.raises(ProviderError, match=r"provider 'ollama' returned malformed JSON"):
        garbage.chat(user("hi"))
    empty = get_provider("anthropic", model="empty", base_url=llm_server.url, api_key=llm_server.key)
    with pytest.raises(ProviderError, match=r"provider 'anthropic' returned a malformed answer.*no 'content' list"):
        empty.chat(user("hi"))
    badargs = get_provider("openai", model="badargs", base_url=f"{llm_server.url}/v1", api_key=llm_server.key)
    # a weak model's broken arguments are not fatal: the call carries the error (never sent to a tool)
    (call,) = badargs.chat(user("time"), tools=[TIME_TOOL]).tool_calls
    assert call.name == "get_current_time" and call.arguments == {}
    assert "malformed JSON arguments for tool 'get_current_time'" in call.error
    with pytest.raises(ProviderError, match=r"provider 'openai' is unreachable"):
        get_provider("openai", model="m", base_url=f"{dead_url}/v1", timeout=2).chat(user("hi"))
