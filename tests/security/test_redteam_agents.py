"""Red team: agents' model answers, tool arguments and call reports under attack.

Each test is an attack that succeeded before its fix. Real parts: a hostile
OpenAI-compatible server over real HTTP (it answers what the attacker wants, in the real
wire format), the demo MCP server over stdio, the run recorder and its SQLite store, the
bundled GGUF model file for the in-process provider (not loaded: the attacks there are
refused before the model is touched).
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from kailash.errors import KailashError
from kailash.nodes.ai import _decide
from kailash.nodes.ai._schema import schema_problems
from kailash.nodes.ai.providers import ChatMessage, ProviderError, ToolSpec, get_provider
from kailash.nodes.base import Node, NodeParameter
from kailash.nodes.mcp import call_tool
from kailash.runtime import LocalRuntime
from kailash.runtime.store import SQLiteRunStore, close_stores
from kailash.security.secrets import reveal
from kailash.workflow import Workflow

SERVERS = Path(__file__).parents[1] / "nodes" / "mcp" / "servers"
TOKEN = "tok-redteam2-very-secret-5309"
DEEP = "[" * 100_000 + "]" * 100_000


# -- a hostile model server ------------------------------------------------------------------

class Hostile:
    """What the hostile server answers next: a raw body (bytes) or a chat answer."""

    def __init__(self) -> None:
        self.body = b"{}"
        self.echo_auth = False  # answer 500 quoting the Authorization header it got
        self.queue: list[bytes] = []  # answers to give first, in order (then ``body``)
        self.received: list[int] = []  # the size of each request body

    def answer(self, content: str = "", arguments: str | None = None) -> None:
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if arguments is not None:
            message["tool_calls"] = [{"id": "c1", "type": "function",
                                      "function": {"name": "lookup", "arguments": arguments}}]
        self.body = json.dumps({"id": "x", "object": "chat.completion", "model": "hostile",
                                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                                "usage": {"prompt_tokens": 1, "completion_tokens": 1}}).encode()


@pytest.fixture(scope="module")
def hostile():
    state = Hostile()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            state.received.append(len(self.rfile.read(int(self.headers.get("Content-Length") or 0))))
            body = state.queue.pop(0) if state.queue and not state.echo_auth else json.dumps({"error": f"refused {self.headers.get('Authorization')}"}).encode() \
                if state.echo_auth else state.body
            self.send_response(500 if state.echo_auth else 200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.port = server.server_port  # type: ignore[attr-defined]
    state.provider = get_provider("openai", base_url=f"http://127.0.0.1:{server.server_port}/v1",  # type: ignore[attr-defined]
                                  model="m", api_key="sk-hostile-test-key-1234", retries=0)
    yield state
    server.shutdown()
    server.server_close()


LOOKUP = ToolSpec(name="lookup", input_schema={"type": "object", "properties": {"n": {"type": "number"}}})


# -- attack 4: hostile JSON in tool arguments ----------------------------------------------

@pytest.mark.parametrize("arguments", [DEEP, '{"n": ' + "7" * 5000 + "}", '{"n": NaN}', '{"n": -Infinity}',
                                       '{"a": ' * 5000 + "1" + "}" * 5000],
                         ids=["deep-array", "huge-int", "nan", "infinity", "deep-object"])
def test_hostile_tool_arguments_become_a_tool_error_the_model_is_told(hostile, arguments):
    # before: RecursionError / ValueError escaped the provider, or NaN/Infinity reached the tool
    hostile.answer(arguments=arguments)
    response = hostile.provider.chat([ChatMessage(role="user", content="go")], tools=[LOOKUP])
    (call,) = response.tool_calls
    assert call.error and call.arguments == {}, call


def test_a_deeply_nested_answer_body_is_a_provider_error(hostile):
    # before: RecursionError escaped (not a KailashError: the node failed with a Python crash)
    hostile.body = ('{"choices": ' + DEEP + "}").encode()
    with pytest.raises(ProviderError, match="malformed JSON"):
        hostile.provider.chat([ChatMessage(role="user", content="go")])


def test_schema_validation_refuses_numbers_json_cannot_carry():
    # before: NaN passed minimum/maximum (every comparison with NaN is false), inf passed "number"
    schema = {"type": "object", "properties": {"n": {"type": "number", "minimum": 0, "maximum": 1},
                                               "xs": {"type": "array"}}}
    assert schema_problems(schema, {"n": float("nan")})
    assert schema_problems(schema, {"xs": [1, {"deep": float("inf")}]})
    assert schema_problems(schema, {"n": 0.5, "xs": [1, 2]}) == []
    # before: {"__proto__": ...} passed a schema without additionalProperties: false, on its way to
    # JavaScript servers that merge arguments into objects (prototype pollution)
    assert schema_problems(schema, {"xs": [{"__proto__": {"isAdmin": True}}]}) == \
        ["xs/0: the key '__proto__' is refused"]


# -- attack 3: hostile decisions ----------------------------------------------------------

POOL = [{"id": f"agent_{i}", "capabilities": ["research"], "performance": 0.8, "cost": 1.0} for i in range(4)]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("content", [DEEP, '{"team": ' + DEEP + "}", "{" * 400_000,
                                     '{"team": ["agent_0"], "reason": "' + "x" * 500_000 + '"}',
                                     '{"team": ["tenant_b/agent_9"], "reason": "mine"}',
                                     '{"team": ["agent_0", "agent_0"], "reason": "twice"}'],
                         ids=["deep", "deep-team", "braces", "huge", "foreign-id", "repeat"])
def test_a_hostile_team_answer_is_refused_and_the_heuristic_decides(hostile, content):
    # before: deep JSON crashed with RecursionError; 400k unmatched braces took minutes (a
    # quadratic regex scan) while holding a worker; a huge answer was parsed whole
    hostile.answer(content=content)
    out = _decide.choose_team(hostile.provider, ["research"], POOL, query="q")
    assert out["decided_by"] == "heuristic" and out["model_error"]
    assert {m["agent_id"] if "agent_id" in m else m.get("id") for m in out.get("members", [])} <= \
        {a["id"] for a in POOL}
    assert len(out["model_error"]) < 2000


@pytest.mark.parametrize("score", ["NaN", "Infinity", "-Infinity"])
def test_a_grade_that_is_not_a_number_is_refused(hostile, score):
    # before: NaN passed the schema's 0..1 bounds and the run's result held NaN (not JSON)
    hostile.answer(content='{"score": ' + score + ', "answers_the_query": true}')
    out = _decide.evaluate(hostile.provider, "q", [{"subtask_id": "s", "content": "Revenue rose 5% to 10M."}],
                           [{"id": "s"}], tools_available=False, quality_threshold=0.7)
    assert out.get("decided_by") != "model" and out.get("model_error")
    json.dumps(out, allow_nan=False)


# -- attack 2: secrets and sizes in reported tool arguments ---------------------------------

class Sly(str):
    """A string that denies holding anything and will not be replaced in."""

    def __contains__(self, item: object) -> bool:
        return False

    def replace(self, *args: Any, **kwargs: Any) -> str:  # type: ignore[override]
        return self

    def __str__(self) -> str:
        return "harmless"

    def __repr__(self) -> str:
        return "'harmless'"


class Config:
    """An object whose repr quotes its credentials (as dataclasses and many clients do)."""

    def __init__(self, password: str) -> None:
        self.password = password

    def __repr__(self) -> str:
        return f"Config(password={self.password!r})"


class Leaker(Node):
    """Calls the demo server's echo tool with the token hidden every way an attacker can think of."""

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {"token": NodeParameter(type=str, required=True, secret=True)}

    def run(self, token: Any) -> dict[str, Any]:
        plain = reveal(token)
        arguments = {
            "text": Sly(f"use {plain} now"),
            "list": [Sly(plain)],
            plain: "the secret as a key",
            "conf": Config(plain),
            "session_id": "sess-abcdef-123456",
            "note": "Authorization: Bearer abcdefghijklmnop0123",
            "blob": b"\x00" * 2_000_000,
            "wide": {f"k{i}": i for i in range(50_000)},
        }
        try:
            call_tool({"name": "demo", "command": sys.executable, "args": [str(SERVERS / "demo_server.py")]},
                      "echo", arguments, owner="leaker")
        except KailashError:
            pass  # echo refuses the extra arguments: the call is reported all the same
        return {"done": True}


def test_secrets_hidden_in_tool_arguments_never_reach_events_or_the_record(tmp_path):
    wf = Workflow("leaky")
    wf.add_node(Leaker(name="leaker"))
    events: list[dict[str, Any]] = []
    _, run_id = LocalRuntime(store=tmp_path / "runs.db", observers=[events.append]).execute(
        wf, parameters={"leaker": {"token": TOKEN}})
    (event,) = [e for e in events if e.get("event") == "tool_call"]
    close_stores()
    record = SQLiteRunStore(tmp_path / "runs.db").get_run(run_id)
    assert record is not None
    for where in (json.dumps(event, default=str), json.dumps(record.calls, default=str), repr(event)):
        assert TOKEN not in where
        assert "sess-abcdef-123456" not in where and "abcdefghijklmnop0123" not in where
    args = event["arguments"]
    assert all(type(v) is str for v in (args["text"], args["list"][0]))  # no hostile subclass travels on
    assert len(json.dumps(args["wide"])) < 20_000 and len(json.dumps(args["blob"])) < 2_000
    assert len(json.dumps(record.calls)) < 50_000


# -- attack 1: the in-process model under a flood -------------------------------------------

def test_a_prompt_far_larger_than_the_context_is_refused_before_waiting_for_the_model():
    pytest.importorskip("llama_cpp")
    from kailash.nodes.ai.providers.local import LocalProvider, default_model_path

    if default_model_path() is None:
        pytest.skip("no bundled GGUF model")
    provider = LocalProvider(n_ctx=512, timeout=0.05)
    slot = provider.loaded
    assert slot.lock.acquire(timeout=5)  # another tenant's call holds the model
    try:
        # before: the 20 MB prompt queued for the model (then was templated and tokenised whole
        # under the shared lock); now it is refused at once, whoever holds the model
        with pytest.raises(ProviderError, match="n_ctx"):
            provider.chat([ChatMessage(role="user", content="x" * 20_000_000)])
        with pytest.raises(ProviderError, match="n_ctx"):
            list(provider.stream([ChatMessage(role="user", content="y " * 10_000_000)]))
    finally:
        slot.lock.release()


# -- attack 2: a run of millions of calls and a client that never reads its events ----------

def test_a_subscriber_that_never_reads_holds_a_bounded_queue_and_still_gets_the_end():
    # before: every event of the run was queued for the stalled SSE client (an unbounded
    # asyncio.Queue): a tenant's run of cheap offline model calls grew the gateway's memory
    # without limit while its own client sat on the stream
    import asyncio

    from kailash.api.runs import LiveRun

    async def scenario() -> tuple[int, list[dict[str, Any]]]:
        run = LiveRun("r1", "wf", None, asyncio.get_running_loop(), frozenset())
        _, queue = run.subscribe()

        def worker() -> None:
            for i in range(120_000):
                run.observe({"event": "model_call", "run_id": "r1", "node_id": "n", "provider": "offline", "i": i})
            run.finish({}, None, [])

        await asyncio.get_running_loop().run_in_executor(None, worker)
        await asyncio.sleep(0)  # the deliveries the worker scheduled run now
        for _ in range(100):
            await asyncio.sleep(0)
        size = queue.qsize()
        got = [queue.get_nowait() for _ in range(size)]
        return size, got

    size, got = asyncio.run(scenario())
    assert size <= 20_001
    assert got[-1]["event"] == "run_completed"  # the end always arrives
    dropped = [e for e in got if e["event"] == "events_dropped"]
    assert dropped and dropped[0]["dropped"] > 0
    seqs = [e["seq"] for e in got]
    assert seqs == sorted(seqs)  # the client's "seen" filter keeps working


# -- attack 2: an MCP server quoting the credentials it was started with ----------------------

SERVICE_TOKEN = "svc-token-redteam2-plain-8841"
LEAKY_SERVER = '''
import os, sys
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

if os.environ.get("CRASH_AT_START"):
    print(f"fatal: SERVICE_TOKEN={os.environ['SERVICE_TOKEN']} was rejected by upstream", file=sys.stderr)
    sys.exit(3)
server = MCPServer("leaky", version="1.0")


@server.tool(description="Fails quoting its credentials")
def whoami() -> str:
    raise ToolError(f"upstream refused token {os.environ['SERVICE_TOKEN']}")


if __name__ == "__main__":
    server.run()
'''


class LeakyCaller(Node):
    """Calls a server configured, as people often do, with a plain-string token in its env."""

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {"script": NodeParameter(type=str, required=True), "crash": NodeParameter(type=bool, default=False)}

    def run(self, script: str, crash: bool) -> dict[str, Any]:
        env = {"SERVICE_TOKEN": SERVICE_TOKEN, **({"CRASH_AT_START": "1"} if crash else {})}
        call_tool({"name": f"leaky{int(crash)}", "command": sys.executable, "args": [script], "env": env},
                  "whoami", {}, owner="caller", connect_timeout=20)
        return {}


@pytest.mark.parametrize("crash", [False, True], ids=["tool-error", "crash-at-start"])
def test_an_mcp_server_quoting_its_env_credentials_is_masked(tmp_path, crash):
    # before: the tool's error text (or the crashed server's stderr) carried the token into the
    # tool_call event, the run record's calls and the node's error
    script = tmp_path / "leaky_server.py"
    script.write_text(LEAKY_SERVER)
    wf = Workflow("leaky-mcp")
    wf.add_node(LeakyCaller(name="caller"))
    events: list[dict[str, Any]] = []
    with pytest.raises(KailashError) as info:
        LocalRuntime(store=tmp_path / "runs.db", observers=[events.append]).execute(
            wf, parameters={"caller": {"script": str(script), "crash": crash}})
    (event,) = [e for e in events if e.get("event") == "tool_call"]
    assert event["ok"] is False and event["error"]
    close_stores()
    record = SQLiteRunStore(tmp_path / "runs.db").get_run(info.value.run_id)  # type: ignore[attr-defined]
    assert record is not None
    for where in (json.dumps(events, default=str), json.dumps(record.calls, default=str), str(info.value),
                  json.dumps(record.error, default=str)):
        assert SERVICE_TOKEN not in where


def test_a_server_described_in_errors_never_shows_credentials_in_its_args_or_url():
    from kailash.nodes.mcp.servers import MCPServerConfig

    stdio = MCPServerConfig.from_any({"name": "s", "command": "srv", "args": ["--api-key", "abcd1234efgh",
                                                                              "--token=zzzz9999yyyy", "--port", "80"]})
    http = MCPServerConfig.from_any({"name": "h", "url": "https://bob:hunter2hunter2@mcp.example/mcp"})
    assert "abcd1234efgh" not in stdio.describe() and "zzzz9999yyyy" not in stdio.describe()
    assert "--port 80" in stdio.describe()  # what is not a credential still names the server
    assert "hunter2hunter2" not in http.describe()
    assert {"abcd1234efgh", "zzzz9999yyyy"} <= stdio.secret_values() and "hunter2hunter2" in http.secret_values()


# -- attack 2: a provider error quoting the credentials it was sent -----------------------------

def test_a_server_echoing_the_basic_auth_header_of_the_operators_url_does_not_leak_the_password(hostile, tmp_path,
                                                                                                 monkeypatch):
    # before: httpx sends a URL's user info as "Basic base64(user:password)"; the server's error
    # page quoted it, and the base64 form matched none of the masks: it reached the node error,
    # the model_call event and the run record
    import base64

    from kailash.nodes.ai.llm_agent import LLMAgentNode

    password = "oppass-redteam2-77aa"
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://operator:{password}@127.0.0.1:{hostile.port}/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-operator-redteam2-key")
    hostile.echo_auth = True
    try:
        wf = Workflow("echoing")
        wf.add_node(LLMAgentNode(name="agent", provider="openai", retries=0))
        events: list[dict[str, Any]] = []
        with pytest.raises(KailashError) as info:
            LocalRuntime(store=tmp_path / "runs.db", observers=[events.append]).execute(
                wf, parameters={"agent": {"prompt": "hi"}})
    finally:
        hostile.echo_auth = False
    assert "refused" in str(info.value)  # the server's text is there, its credential is not
    close_stores()
    record = SQLiteRunStore(tmp_path / "runs.db").get_run(info.value.run_id)  # type: ignore[attr-defined]
    assert record is not None
    encoded = base64.b64encode(f"operator:{password}".encode()).decode().rstrip("=")
    for where in (str(info.value), json.dumps(events, default=str), json.dumps(record.calls, default=str),
                  json.dumps(record.error, default=str)):
        assert password not in where and encoded not in where and "sk-operator-redteam2-key" not in where


# -- attack 4: a hostile tool schema that makes validation itself the attack -----------------

@pytest.mark.timeout(60)
def test_a_tool_schema_pattern_that_backtracks_exponentially_does_not_hold_the_gateway():
    # before: the tool's own schema (its server's, possibly hostile) said "pattern": "^(a+)+$";
    # checking 40 characters of arguments against it took hours with the interpreter lock held
    schema = {"type": "object", "properties": {"s": {"type": "string", "pattern": "^(a+)+$"}},
              "patternProperties": {"^(x|xx)+$": {"type": "integer"}}}
    assert schema_problems(schema, {"s": "a" * 40 + "!", "x" * 40 + "!": "not checked"}) == []
    # short strings, and safe patterns, are still checked
    assert schema_problems(schema, {"s": "aa!"})
    safe = {"type": "object", "properties": {"code": {"type": "string", "pattern": "^[A-Z]{3}$"}}}
    assert schema_problems(safe, {"code": "abcdefghijklmnopqrstuvwxyz0123456789"})


def test_a_stream_its_reader_abandons_does_not_keep_other_calls_waiting():
    # before: the stream held the shared model from its first piece until the reader finished
    # or closed it: a reader that stopped (a slow client, a forgotten iterator) starved every
    # other call of the process, each failing "stayed busy" after its timeout
    pytest.importorskip("llama_cpp")
    from kailash.nodes.ai.providers.local import LocalProvider, default_model_path

    if default_model_path() is None:
        pytest.skip("no bundled GGUF model")
    reader = LocalProvider(n_ctx=512)
    other = LocalProvider(n_ctx=512, timeout=60)
    assert other.loaded is reader.loaded  # one shared model
    abandoned = reader.stream([ChatMessage(role="user", content="Count from one to twenty.")], max_tokens=24,
                              temperature=0.0)
    assert next(abandoned)  # reading has begun, then the reader walks away (the iterator stays open)
    answer = other.chat([ChatMessage(role="user", content="Name a fruit.")], max_tokens=4, temperature=0.0)
    assert answer.content is not None
    rest = "".join(abandoned)  # what the reader had not read is still there, complete
    assert isinstance(rest, str)
    closed = reader.stream([ChatMessage(role="user", content="Say hello.")], max_tokens=24)
    next(closed)
    closed.close()  # closing early stops the answer and frees the model
    assert other.chat([ChatMessage(role="user", content="hi")], max_tokens=2).content is not None


# -- attack 1: sizes a tenant sets -------------------------------------------------------------

def test_a_tenant_cannot_raise_the_size_of_a_provider_answer_the_gateway_holds(tmp_path):
    # before: max_response_bytes=10**12 let a tenant's own server stream gigabytes into the
    # gateway's memory (the body is held whole before it is parsed)
    from kailash.errors import SecurityError
    from kailash.nodes.capabilities import TenantScope, tenant_scope

    scope = TenantScope(tenant_id="acme", capabilities=frozenset({"network"}), files_dir=str(tmp_path))
    with tenant_scope(scope):
        with pytest.raises(SecurityError, match="max_response_bytes"):
            get_provider("openai", base_url="http://127.0.0.1:9/v1", api_key="k", max_response_bytes=10**12)
        assert get_provider("openai", base_url="http://127.0.0.1:9/v1", api_key="k",
                            max_response_bytes=1024).name == "openai"  # lowering it is fine
    assert get_provider("openai", base_url="http://127.0.0.1:9/v1", api_key="k", max_response_bytes=10**9)


def test_a_provider_error_never_quotes_the_password_of_its_url_even_outside_a_run():
    # before: "answered HTTP 503 at http://user:PASSWORD@host/..." reached a decision's
    # model_error (a node result) and any log of the error: only run redaction masked it
    dead = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)  # answers 501 to every POST
    threading.Thread(target=dead.serve_forever, daemon=True).start()
    try:
        provider = get_provider("openai", base_url=f"http://user:pw-redteam2-3141@127.0.0.1:{dead.server_port}/v1",
                                api_key="k", retries=0)
        out = _decide.evaluate(provider, "q", [{"subtask_id": "s", "content": "x"}], [{"id": "s"}],
                               tools_available=False, quality_threshold=0.5)
        assert "HTTP 501" in out["model_error"] and "pw-redteam2-3141" not in json.dumps(out)
        with pytest.raises(ProviderError) as info:
            provider.chat([ChatMessage(role="user", content="hi")])
        assert "pw-redteam2-3141" not in str(info.value) and "pw-redteam2-3141" not in repr(info.value.args)
    finally:
        dead.shutdown()
        dead.server_close()


# -- attack 2: one tenant reading another's agents' memory and cached tool results -------------

def test_a_saved_shared_node_reference_never_reaches_another_tenants_pool_or_cache(tmp_path):
    # before: {"node": "team"} named one process-wide pool (and cache) for every tenant of the
    # gateway: tenant B's agents read what tenant A's agents remembered, and took A's cached
    # tool results (fetched with A's credentials) as their own
    from kailash.nodes.ai.cache import IntelligentCacheNode
    from kailash.nodes.ai.llm_agent import resolve_shared
    from kailash.nodes.ai.memory import SharedMemoryPoolNode
    from kailash.nodes.capabilities import TenantScope, tenant_scope

    def scope(tenant: str) -> TenantScope:
        return TenantScope(tenant_id=tenant, capabilities=frozenset(), files_dir=str(tmp_path / tenant))

    ref = {"memory_pool": {"node": "team-redteam2"}, "shared_cache": {"node": "cache-redteam2"}}
    with tenant_scope(scope("acme")):
        mine = resolve_shared(dict(ref))
        mine["memory_pool"].execute(action="write", agent_id="a1", content="acme's merger is on 12 May",
                                    tags=["deal"], importance=1.0)
        again = resolve_shared(dict(ref))
        assert again["memory_pool"] is mine["memory_pool"] and again["shared_cache"] is mine["shared_cache"]
    with tenant_scope(scope("rival")):
        theirs = resolve_shared(dict(ref))
        assert isinstance(theirs["memory_pool"], SharedMemoryPoolNode)
        assert isinstance(theirs["shared_cache"], IntelligentCacheNode)
        assert theirs["memory_pool"] is not mine["memory_pool"]
        assert theirs["shared_cache"] is not mine["shared_cache"]
        read = theirs["memory_pool"].execute(action="read", agent_id="spy", attention_filter={"tags": ["deal"]})
        assert read["memories"] == []
    outside = resolve_shared(dict(ref))  # the gateway's own runs keep their own
    assert outside["memory_pool"] is not mine["memory_pool"]


def test_tenants_never_share_a_running_mcp_server(tmp_path):
    # before: sessions were pooled by the server's command, args and env alone, so two tenants
    # configuring the same stdio server shared one process and its state (a memory or
    # knowledge-graph server: one tenant reading what the other stored)
    from kailash.nodes.capabilities import TenantScope, tenant_scope

    server = {"name": "demo-shared", "command": sys.executable, "args": [str(SERVERS / "demo_server.py")]}

    def count(tenant: str | None) -> int:
        if tenant is None:
            return call_tool(server, "counter", {})["result"]
        with tenant_scope(TenantScope(tenant_id=tenant, capabilities=frozenset({"host_process"}),
                                      files_dir=str(tmp_path / tenant))):
            return call_tool(server, "counter", {})["result"]

    assert [count("acme"), count("acme")] == [1, 2]  # one tenant's calls share its server
    assert count("rival") == 1  # another tenant gets its own process
    assert count(None) == 1 and count("acme") == 3


# -- attack 2: a hostile name or error text written to the operator's terminal -----------------

def test_a_call_line_printed_by_the_cli_carries_no_terminal_control_characters():
    # before: a tool name the model made up ("rejected" calls are reported with it), a server's
    # error text or a model name went raw to `kailash run --progress` / `kailash runs RUN_ID`:
    # ESC sequences could clear the screen, retitle the window or hide lines
    from kailash.cli.progress import describe_call

    hostile = "\x1b]0;owned\x07\x1b[2J\x1b[1A\r\x9b31m"
    for call in ({"event": "tool_call", "server": "s" + hostile, "tool": "t" + hostile, "arguments": {},
                  "outcome": "rejected", "error": "e" + hostile},
                 {"event": "model_call", "provider": "p" + hostile, "model": "m" + hostile, "error": "x\ny" + hostile}):
        line = describe_call(call)
        assert not any(ord(ch) < 32 or 127 <= ord(ch) < 160 for ch in line), repr(line)
        assert "owned" in line  # shown, harmless


def test_kailash_runs_prints_a_run_s_errors_and_output_without_terminal_control_characters(tmp_path, monkeypatch,
                                                                                        capsys):
    # before: a node's error (often a server's text) and its captured output went raw to the terminal
    from kailash.cli.main import main

    class Noisy(Node):
        def get_parameters(self) -> dict[str, NodeParameter]:
            return {}

        def run(self) -> dict[str, Any]:
            print("look\x1b]0;owned\x07 here")
            raise ValueError("server said \x1b[2J\x1b[1Agone")

    wf = Workflow("noisy")
    wf.add_node(Noisy(name="noisy"))
    monkeypatch.setenv("KAILASH_HOME", str(tmp_path))
    with pytest.raises(KailashError) as info:
        LocalRuntime(store=tmp_path / "runs.db").execute(wf)
    close_stores()
    capsys.readouterr()
    main(["runs", info.value.run_id])  # type: ignore[attr-defined]
    shown = capsys.readouterr().out
    assert "gone" in shown and "owned" in shown
    assert "\x1b" not in shown and "\x07" not in shown



# -- attack 2: a tool result that explodes once it is fed back to the model ---------------------

def test_a_huge_tool_result_is_cut_before_it_is_sent_back_to_the_model(hostile):
    # before: whatever a server answered went whole into the conversation and was sent again on
    # every later round (a 300,000-character echo: 300 KB per model call, and on)
    from kailash.nodes.ai._agent_loop import TOOL_RESULT_CHARS, ToolBox, run_agent

    demo = {"name": "demo", "command": sys.executable, "args": [str(SERVERS / "demo_server.py")]}
    hostile.answer(arguments=json.dumps({"text": "x" * 300_000}))
    call = hostile.body.replace(b'"lookup"', b'"echo"')
    hostile.answer(content="done")
    hostile.queue, hostile.received = [call], []
    out = run_agent(hostile.provider, [ChatMessage(role="user", content="echo a lot")], toolbox=ToolBox([demo], owner="agent"),
                    owner="agent", max_rounds=3)
    assert out.content == "done" and len(hostile.received) == 2
    # the model's own call goes back as it came; the echo of it comes back cut
    assert hostile.received[1] < len(call) + TOOL_RESULT_CHARS + 20_000
    tool_message = [m for m in out.messages if m.role == "tool"][0]
    assert "more characters" in tool_message.content
