"""Each model call and each MCP tool call of a run's agents is a run event and part of the run record.

Real parts: the offline provider, the local model server of ``conftest.py`` (OpenAI wire
protocol over HTTP), SmolLM2 on llama.cpp's server (slow), and the MCP servers of
``tests/nodes/mcp/servers`` over stdio. Records are read back from a fresh store.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from kailash.errors import NodeExecutionError
from kailash.nodes.ai.intelligent_agent_orchestrator import OrchestrationManagerNode
from kailash.nodes.ai.llm_agent import LLMAgentNode
from kailash.nodes.ai.providers import ChatMessage, OfflineProvider, get_provider
from kailash.nodes.base import Node, NodeParameter
from kailash.nodes.mcp import MCPClientNode, call_tool
from kailash.runtime import LocalRuntime, ParallelRuntime
from kailash.runtime.engine import CALL_LIMIT
from kailash.runtime.store import SQLiteRunStore, close_stores
from kailash.security.secrets import reveal
from kailash.workflow import Workflow

SERVERS = Path(__file__).parents[1] / "mcp" / "servers"
TOKEN = "tok-very-secret-4711"


def demo() -> dict[str, Any]:
    return {"name": "demo", "command": sys.executable, "args": [str(SERVERS / "demo_server.py")]}


def calls_of(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e.get("event") in ("model_call", "tool_call")]


def reloaded(tmp_path: Path, run_id: str) -> Any:
    """The run's record as a fresh store (a new connection to the same file) reads it."""
    close_stores()  # flushes the run log's writer
    record = SQLiteRunStore(tmp_path / "runs.db").get_run(run_id)
    assert record is not None
    return record


class ToolUser(Node):
    """Calls the demo server's tools with a token it is given (a secret run parameter)."""

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {"token": NodeParameter(type=str, required=True, secret=True),
                "fail": NodeParameter(type=bool, default=False)}

    def run(self, token: Any, fail: bool) -> dict[str, Any]:
        plain = reveal(token)
        echoed = call_tool(demo(), "echo", {"text": f"use {plain} now", "api_key": "plain-key-998877",
                                            "nested": {"password": "hunter2-hunter2"}}, owner="node tools")
        if fail:
            call_tool(demo(), "fail", {"message": f"rejected {plain}"}, owner="node tools")
        return {"echoed": echoed["result"]}


class Chatter(Node):
    """Asks the offline provider ``n`` times."""

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {"n": NodeParameter(type=int, default=1)}

    def run(self, n: int) -> dict[str, Any]:
        p = OfflineProvider()
        for i in range(n):
            p.chat([ChatMessage(role="user", content=f"question {i}")])
        return {"asked": n}


# -- events and record ---------------------------------------------------------------------------

def test_an_agents_model_and_tool_calls_are_run_events_and_in_the_reloaded_record(tmp_path, capsys, monkeypatch):
    wf = Workflow("agent-calls")
    wf.add_node(LLMAgentNode(name="agent", prompt="Echo the given text back unchanged, text: hello-world",
                             mcp_servers=[demo()]))
    events: list[dict[str, Any]] = []
    runtime = LocalRuntime(store=tmp_path / "runs.db", observers=[events.append])
    results, run_id = runtime.execute(wf)

    seen = calls_of(events)
    models = [e for e in seen if e["event"] == "model_call"]
    tools = [e for e in seen if e["event"] == "tool_call"]
    assert len(models) == 2 and len(tools) == 1  # ask, tool, answer
    for e in seen:
        assert e["run_id"] == run_id and e["node_id"] == "agent" and e["ok"] is True
        assert e["latency_ms"] >= 0
    assert models[0]["provider"] == "offline" and models[0]["model"] == "kailash-offline-1"
    assert models[0]["operation"] == "chat" and models[0]["prompt_tokens"] > 0
    assert (tools[0]["server"], tools[0]["tool"]) == ("demo", "echo")
    assert tools[0]["arguments"] == {"text": "hello-world"} and tools[0]["outcome"] == "ok"
    # in order: between the node's start and its end
    kinds = [e["event"] for e in events]
    assert kinds.index("node_started") < kinds.index("model_call") < kinds.index("tool_call") \
        < kinds.index("node_completed")
    # the node's own output keeps its tool calls as before
    assert results["agent"]["tool_calls"][0]["tool"] == "echo"

    record = reloaded(tmp_path, run_id)
    assert record.calls == [{k: v for k, v in e.items() if k != "run_id"} for e in seen]
    assert record.to_dict()["calls"] == record.calls and record.calls_truncated == 0

    from kailash.cli.main import main

    monkeypatch.setenv("KAILASH_HOME", str(tmp_path))
    assert main(["runs", run_id]) == 0
    shown = capsys.readouterr().out
    assert "calls (3):" in shown
    assert "model offline/kailash-offline-1" in shown and 'tool demo.echo {"text": "hello-world"}' in shown


def test_without_a_store_observers_still_get_the_calls():
    wf = Workflow("observed")
    wf.add_node(Chatter(name="chat", n=2))
    events: list[dict[str, Any]] = []
    LocalRuntime(store=None, observers=[events.append]).execute(wf)
    assert [(e["event"], e["node_id"]) for e in calls_of(events)] == [("model_call", "chat")] * 2


def test_outside_a_run_nothing_is_reported():
    from kailash.runtime import capture

    assert capture._current_call() is None
    out = LLMAgentNode(name="agent").execute(prompt="Summarise: sales rose 5% in Q3.")
    assert out["response"]  # works as before, nothing to report to


def test_a_secret_run_parameter_used_in_tool_arguments_is_masked_in_events_record_and_errors(tmp_path, capsys,
                                                                                          monkeypatch):
    wf = Workflow("secret-tools")
    wf.add_node(ToolUser(name="tools"))
    events: list[dict[str, Any]] = []
    runtime = LocalRuntime(store=tmp_path / "runs.db", observers=[events.append])
    with pytest.raises(NodeExecutionError) as info:
        runtime.execute(wf, parameters={"tools": {"token": TOKEN, "fail": True}})
    assert TOKEN not in str(info.value)
    run_id = info.value.run_id

    seen = calls_of(events)
    assert [(e["tool"], e["ok"]) for e in seen] == [("echo", True), ("fail", False)]
    echo, fail = seen
    assert echo["arguments"] == {"text": "use *** now", "api_key": "***", "nested": {"password": "***"}}
    assert fail["arguments"] == {"message": "rejected ***"} and fail["outcome"] == "failed"
    assert "rejected ***" in fail["error"] and "refused" not in fail["error"]
    record = reloaded(tmp_path, run_id)
    assert record.status == "failed" and len(record.calls) == 2
    assert record.calls[1]["error"] == fail["error"]

    from kailash.cli.main import main

    monkeypatch.setenv("KAILASH_HOME", str(tmp_path))
    main(["runs", run_id])
    main(["runs", run_id, "--json"])
    shown = capsys.readouterr().out
    assert "FAILED" in shown and "tool demo.fail" in shown
    for text in (json.dumps(events), json.dumps(record.to_dict()), shown):
        for secret in (TOKEN, "plain-key-998877", "hunter2-hunter2"):
            assert secret not in text


def test_a_failing_tool_call_is_ok_false_with_its_error_and_the_run_goes_on(tmp_path):
    wf = Workflow("failing-tool")
    wf.add_node(MCPClientNode(name="mcp", server_config=demo(), operation="call_tool", tool_name="fail",
                              tool_arguments={"message": "oops-4242"}, raise_on_error=False))
    wf.add_node(MCPClientNode(name="gone", server_config={"name": "gone", "command": sys.executable,
                                                          "args": [str(SERVERS / "no_such_server.py")]},
                              operation="call_tool", tool_name="echo", tool_arguments={"text": "x"},
                              connect_timeout=10))
    events: list[dict[str, Any]] = []
    runtime = LocalRuntime(store=tmp_path / "runs.db", observers=[events.append])
    with pytest.raises(NodeExecutionError):
        runtime.execute(wf)
    by_node = {e["node_id"]: e for e in calls_of(events)}
    assert by_node["mcp"]["ok"] is False and "oops-4242" in by_node["mcp"]["error"]
    assert by_node["gone"]["ok"] is False and by_node["gone"]["server"] == "gone" and by_node["gone"]["error"]
    record = reloaded(tmp_path, next(iter(events))["run_id"])
    assert {c["node_id"]: c["ok"] for c in record.calls} == {"mcp": False, "gone": False}


def test_rejected_and_cached_tool_calls_are_reported_with_their_outcome(tmp_path):
    from kailash.nodes.ai.cache import IntelligentCacheNode

    cache = IntelligentCacheNode(name="cache")
    wf = Workflow("outcomes")
    for name in ("a1", "a2"):
        wf.add_node(LLMAgentNode(name=name, prompt="Echo the given text back unchanged, text: same-text",
                                 mcp_servers=[demo()], shared_cache=cache))
    wf.connect("a1", "a2", mapping={"response": "context"})
    events: list[dict[str, Any]] = []
    LocalRuntime(store=tmp_path / "runs.db", observers=[events.append]).execute(wf)
    tools = [(e["node_id"], e["outcome"]) for e in calls_of(events) if e["event"] == "tool_call"]
    assert tools == [("a1", "ok"), ("a2", "cached")]


def test_the_record_keeps_the_first_calls_and_counts_the_rest_and_long_arguments_are_cut(tmp_path):
    wf = Workflow("many-calls")
    wf.add_node(Chatter(name="chat", n=CALL_LIMIT + 7))
    wf.add_node(MCPClientNode(name="long", server_config=demo(), operation="call_tool", tool_name="echo",
                              tool_arguments={"text": "x" * 5000}))
    events: list[dict[str, Any]] = []
    _, run_id = LocalRuntime(store=tmp_path / "runs.db", observers=[events.append]).execute(wf)
    assert len(calls_of(events)) == CALL_LIMIT + 8  # observers see every call
    record = reloaded(tmp_path, run_id)
    assert len(record.calls) == CALL_LIMIT and record.calls_truncated == 8
    assert record.to_dict()["calls_truncated"] == 8
    long = next(e for e in calls_of(events) if e["node_id"] == "long")
    assert long["arguments"]["text"].endswith("...[truncated: 4000 more characters]")


def test_parallel_nodes_each_get_their_own_calls(tmp_path):
    wf = Workflow("parallel-agents")
    wf.add_node(Chatter(name="left", n=3))
    wf.add_node(Chatter(name="right", n=2))
    wf.add_node(LLMAgentNode(name="agent", prompt="Echo the given text back unchanged, text: par",
                             mcp_servers=[demo()]))
    events: list[dict[str, Any]] = []
    _, run_id = ParallelRuntime(max_concurrency=3, store=tmp_path / "runs.db",
                                observers=[events.append]).execute_sync(wf)
    counts: dict[str, int] = {}
    for e in calls_of(events):
        counts[e["node_id"]] = counts.get(e["node_id"], 0) + 1
    assert counts["left"] == 3 and counts["right"] == 2 and counts["agent"] == 3
    assert len(reloaded(tmp_path, run_id).calls) == len(calls_of(events))


def test_an_orchestrators_calls_are_attributed_to_its_node(tmp_path):
    market = {"name": "market", "command": sys.executable, "args": [str(SERVERS / "market_server.py")]}
    wf = Workflow("orchestrated")
    wf.add_node(OrchestrationManagerNode(name="orchestrator", max_iterations=1))
    events: list[dict[str, Any]] = []
    _, run_id = LocalRuntime(store=tmp_path / "runs.db", observers=[events.append]).execute(
        wf, parameters={"orchestrator": {"query": "Analyze market trends", "mcp_servers": [market]}})
    seen = calls_of(events)
    assert {e["node_id"] for e in seen} == {"orchestrator"}
    assert any(e["event"] == "tool_call" and e["server"] == "market" for e in seen)
    assert any(e["event"] == "model_call" for e in seen)
    assert len(reloaded(tmp_path, run_id).calls) == len(seen)


# -- HTTP providers ------------------------------------------------------------------------------

def test_an_http_providers_calls_carry_tokens_and_a_failure_never_the_key(tmp_path, llm_server, dead_url):
    wf = Workflow("http-model")
    wf.add_node(LLMAgentNode(name="ok", provider="openai", model="tiny", base_url=f"{llm_server.url}/v1",
                             api_key=llm_server.key, prompt="hello there"))
    wf.add_node(LLMAgentNode(name="down", provider="openai", model="tiny", base_url=f"{dead_url}/v1",
                             api_key="sk-live-abcdef123456", prompt="hello", retries=0))
    wf.connect("ok", "down", mapping={"response": "context"})
    events: list[dict[str, Any]] = []
    runtime = LocalRuntime(store=tmp_path / "runs.db", observers=[events.append])
    with pytest.raises(NodeExecutionError):
        runtime.execute(wf)
    ok, down = calls_of(events)
    assert (ok["node_id"], ok["provider"], ok["model"], ok["ok"]) == ("ok", "openai", "tiny", True)
    assert down["node_id"] == "down" and down["ok"] is False and "unreachable" in down["error"]
    record = reloaded(tmp_path, ok["run_id"])
    assert [c["ok"] for c in record.calls] == [True, False]
    text = json.dumps(events) + json.dumps(record.to_dict())
    assert "sk-live-abcdef123456" not in text and llm_server.key not in text


# -- the real model ------------------------------------------------------------------------------

@pytest.mark.slow
def test_real_model_calls_are_reported_with_the_servers_token_counts(tmp_path):
    from tests.nodes.ai.real_model import real_model

    model = real_model()

    class Streamer(Node):
        def get_parameters(self) -> dict[str, NodeParameter]:
            return {"prompt": NodeParameter(type=str, default="Say hello.")}

        def run(self, prompt: str) -> dict[str, Any]:
            p = get_provider("openai", model=model.model, base_url=model.url, timeout=120)
            return {"text": "".join(p.stream([ChatMessage(role="user", content=prompt)], max_tokens=16))}

    wf = Workflow("real-model")
    wf.add_node(LLMAgentNode(name="agent", provider="openai", model=model.model, base_url=model.url,
                             prompt="Echo the text 'hello' using the echo tool.", mcp_servers=[demo()],
                             max_tokens=48, timeout=120, max_tool_rounds=2))
    wf.add_node(Streamer(name="stream"))
    events: list[dict[str, Any]] = []
    _, run_id = LocalRuntime(store=tmp_path / "runs.db", observers=[events.append]).execute(wf)
    seen = calls_of(events)
    chats = [e for e in seen if e["event"] == "model_call" and e["node_id"] == "agent"]
    assert chats and all(e["ok"] and e["provider"] == "openai" for e in chats)
    assert chats[0]["prompt_tokens"] > 0 and chats[0]["completion_tokens"] > 0  # the server's own counts
    streamed = [e for e in seen if e["node_id"] == "stream"]
    assert len(streamed) == 1 and streamed[0]["operation"] == "stream" and streamed[0]["chunks"] > 0
    record = reloaded(tmp_path, run_id)
    assert record.calls == [{k: v for k, v in e.items() if k != "run_id"} for e in seen]
    for e in seen:  # whatever the small model asked of the tools went through the MCP server
        if e["event"] == "tool_call":
            assert e["server"] == "demo" and e["node_id"] == "agent"


# -- PostgreSQL ---------------------------------------------------------------------------------

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def test_the_calls_reach_a_postgresql_run_store_through_its_run_log():
    psycopg = pytest.importorskip("psycopg")
    try:
        psycopg.connect(PG_URL, connect_timeout=3).close()
    except Exception as exc:  # pragma: no cover - the machine's PostgreSQL is expected to be up
        pytest.skip(f"no PostgreSQL at {PG_URL}: {exc}")
    import uuid

    from kailash.api.postgres import PostgresStorage

    tag = uuid.uuid4().hex[:10]
    names = (f"kcalls_reg_{tag}", f"kcalls_def_{tag}")
    storage = PostgresStorage(PG_URL, registry_schema=names[0], default_schema=names[1])
    fresh = None
    try:
        _, runs = storage.workspace_stores(None)
        wf = Workflow("pg-calls")
        wf.add_node(ToolUser(name="tools"))
        for durability in ("default", "off"):
            events: list[dict[str, Any]] = []
            runtime = LocalRuntime(store=runs, observers=[events.append], durability=durability)
            _, run_id = runtime.execute(wf, parameters={"tools": {"token": TOKEN}})
            runs.flush()
            fresh = PostgresStorage(PG_URL, registry_schema=names[0], default_schema=names[1])
            record = fresh.workspace_stores(None)[1].get_run(run_id)
            fresh.close()
            assert record is not None and record.status == "completed"
            assert [(c["node_id"], c["tool"], c["ok"]) for c in record.calls] == [("tools", "echo", True)]
            assert record.calls[0]["arguments"]["text"] == "use *** now"
            assert TOKEN not in json.dumps(record.to_dict())
    finally:
        storage.close()
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            for name in names:
                conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


# -- more places the calls come from and go to ----------------------------------------------------

def test_a_provider_subclass_calling_its_base_is_reported_once(tmp_path):
    class Cautious(OfflineProvider):
        def chat(self, messages, **kw):  # type: ignore[no-untyped-def]
            return super().chat(messages, **kw)

    class Asker(Node):
        def get_parameters(self) -> dict[str, NodeParameter]:
            return {}

        def run(self) -> dict[str, Any]:
            return {"answer": Cautious().chat([ChatMessage(role="user", content="hi")]).content}

    wf = Workflow("subclass")
    wf.add_node(Asker(name="ask"))
    events: list[dict[str, Any]] = []
    LocalRuntime(store=tmp_path / "runs.db", observers=[events.append]).execute(wf)
    assert [(e["event"], e["node_id"]) for e in calls_of(events)] == [("model_call", "ask")]


def test_a_sub_workflows_calls_belong_to_the_node_that_runs_it(tmp_path):
    from kailash.nodes.logic.workflow import WorkflowNode

    inner = Workflow("inner")
    inner.add_node(Chatter(name="chat", n=2))
    wf = Workflow("outer")
    wf.add_node(WorkflowNode(name="sub", workflow=inner))
    events: list[dict[str, Any]] = []
    _, run_id = LocalRuntime(store=tmp_path / "runs.db", observers=[events.append]).execute(wf)
    assert [e["node_id"] for e in calls_of(events)] == ["sub", "sub"]
    assert [c["node_id"] for c in reloaded(tmp_path, run_id).calls] == ["sub", "sub"]


def test_kailash_run_progress_shows_the_tool_calls(tmp_path):
    import os
    import subprocess

    wf = Workflow("cli-agent")
    wf.add_node(LLMAgentNode(name="agent", prompt="Echo the given text back unchanged, text: from-cli",
                             mcp_servers=[demo()]))
    wf.save(tmp_path / "agent.yaml")
    root = Path(__file__).resolve().parents[3]
    env = {**os.environ, "KAILASH_HOME": str(tmp_path / "home")}
    proc = subprocess.run([sys.executable, "-m", "kailash.cli", "run", str(tmp_path / "agent.yaml"), "--progress"],
                          capture_output=True, text=True, timeout=120, env=env, cwd=root)
    assert proc.returncode == 0, proc.stderr
    assert '↳ tool demo.echo {"text": "from-cli"}' in proc.stderr
    assert "✔ [1/1] agent" in proc.stderr and "(2 model calls, 1 tool call)" in proc.stderr


@pytest.mark.parametrize("kind", ["local", "parallel"])
def test_an_async_nodes_calls_are_attributed_to_it(tmp_path, kind):
    import asyncio

    from kailash.nodes.base_async import AsyncNode

    class AsyncAsker(AsyncNode):
        def get_parameters(self) -> dict[str, NodeParameter]:
            return {}

        async def async_run(self) -> dict[str, Any]:
            await asyncio.sleep(0.01)
            answer = OfflineProvider().chat([ChatMessage(role="user", content="hi")])
            return {"answer": answer.content}

    wf = Workflow("async-agent")
    wf.add_node(AsyncAsker(name="async_ask"))
    wf.add_node(Chatter(name="sync_ask", n=1))
    events: list[dict[str, Any]] = []
    if kind == "parallel":
        ParallelRuntime(max_concurrency=2, store=tmp_path / "runs.db", observers=[events.append]).execute_sync(wf)
    else:
        LocalRuntime(store=tmp_path / "runs.db", observers=[events.append]).execute(wf)
    assert sorted(e["node_id"] for e in calls_of(events)) == ["async_ask", "sync_ask"]


def test_each_call_is_an_event_of_its_nodes_span():
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from kailash.runtime.tracing import OpenTelemetryObserver

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    wf = Workflow("traced-agent")
    wf.add_node(LLMAgentNode(name="agent", prompt="Echo the given text back unchanged, text: traced",
                             mcp_servers=[demo()]))
    LocalRuntime(store=None, observers=[OpenTelemetryObserver(provider)]).execute(wf)
    span = next(s for s in exporter.get_finished_spans() if s.name == "kailash.node agent")
    names = [e.name for e in span.events]
    assert names == ["kailash.model_call", "kailash.tool_call", "kailash.model_call"]
    tool = span.events[1].attributes
    assert tool["kailash.server"] == "demo" and tool["kailash.tool"] == "echo" and tool["kailash.ok"] is True
