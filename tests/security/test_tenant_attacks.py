"""Tenants attacking the host through node types, through the real gateway on PostgreSQL storage.

Each test is an attack a tenant could make with only its API key; each asserts the secure
outcome (refused with a clear error, and the side effect did not happen). The gateway is
uvicorn on 127.0.0.1; storage, the registry and every tenant's role live in PostgreSQL.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.security.tenant_gateway import PG_URL, postgres_or_skip, recording_server, tenant_gateway

pytestmark = pytest.mark.usefixtures("_no_leftover_env")


@pytest.fixture
def _no_leftover_env(monkeypatch):
    for name in ("KAILASH_LLM_PROVIDER", "OPENAI_BASE_URL", "OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(name, raising=False)


def _error(reply) -> dict:
    body = reply.json()
    return body.get("error") or body


def _marker_command(marker: Path) -> dict:
    """An MCP "server" whose only job is to prove it ran: it writes ``marker``."""
    return {"name": "evil", "command": sys.executable,
            "args": ["-c", f"import pathlib; pathlib.Path({str(marker)!r}).write_text('pwned')"]}


# -- host processes: MCP stdio ------------------------------------------------------------------

def test_mcp_stdio_command_is_refused_at_upload_and_at_run_time(tmp_path):
    marker = tmp_path / "mcp-ran"
    with tenant_gateway(acme={}) as gw:
        up = gw.upload("acme", "mcp", [{"id": "mcp", "type": "MCPClientNode",
                                        "config": {"server_config": _marker_command(marker)}}])
        assert up.status_code == 422, up.text
        assert "host_process" in up.text and "acme" in up.text

        # the command arrives as a run parameter instead
        assert gw.upload("acme", "mcp2", [{"id": "mcp", "type": "MCPClientNode", "config": {}}]).status_code == 201
        run = gw.run("acme", "mcp2", {"mcp": {"server_config": _marker_command(marker)}})
        assert run.status_code == 422 and _error(run)["type"] == "SecurityError", run.text
        assert "host_process" in _error(run)["message"]

        # ... or through a connection, computed by the tenant's own code
        code = f"result = {_marker_command(marker)!r}"
        nodes = [{"id": "make", "type": "PythonCodeNode", "config": {"code": code}},
                 {"id": "mcp", "type": "MCPClientNode", "config": {}}]
        conn = [{"from": "make", "to": "mcp", "mapping": {"result": "server_config"}}]
        assert gw.upload("acme", "mcp3", nodes, conn).status_code == 201
        run = gw.run("acme", "mcp3")
        assert run.status_code == 422 and "host_process" in _error(run)["message"], run.text

        # ... or as an agent's tool server
        agent = [{"id": "agent", "type": "LLMAgentNode", "config": {"prompt": "hi"}}]
        assert gw.upload("acme", "agent", agent).status_code == 201
        run = gw.run("acme", "agent", {"agent": {"mcp_servers": [_marker_command(marker)]}})
        assert "needs the 'host_process' capability" in run.text, run.text  # agents report tool-server errors
    assert not marker.exists()


def test_mcp_stdio_runs_for_a_tenant_granted_host_process(tmp_path):
    marker = tmp_path / "mcp-ran"
    with tenant_gateway(ops={"grant": ["host_process"]}) as gw:
        assert gw.upload("ops", "mcp", [{"id": "mcp", "type": "MCPClientNode",
                                         "config": {"server_config": _marker_command(marker),
                                                    "connect_timeout": 5.0}}]).status_code == 201
        gw.run("ops", "mcp")  # not a real MCP server: the call fails, but it was allowed to start
    assert marker.read_text() == "pwned"


# -- host credentials: model providers ---------------------------------------------------------

def test_a_tenants_model_call_never_carries_the_hosts_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-host-secret-0123456789")
    with recording_server() as (url, seen), tenant_gateway(acme={}) as gw:
        nodes = [{"id": "agent", "type": "LLMAgentNode",
                  "config": {"provider": "openai", "base_url": url, "model": "m", "prompt": "hello"}}]
        assert gw.upload("acme", "ask", nodes).status_code == 201
        run = gw.run("acme", "ask")
        assert run.status_code == 200, run.text
        assert seen, "the tenant's own endpoint was called"
        assert all("sk-host-secret" not in v for headers in seen for v in headers.values())
        assert "sk-host-secret" not in run.text

        # the host's default provider and endpoint are not a tenant's defaults either
        seen.clear()
        monkeypatch.setenv("KAILASH_LLM_PROVIDER", "openai")
        monkeypatch.setenv("OPENAI_BASE_URL", url)
        assert gw.upload("acme", "plain", [{"id": "agent", "type": "LLMAgentNode",
                                            "config": {"prompt": "hello"}}]).status_code == 201
        run = gw.run("acme", "plain")
        assert run.status_code == 200 and run.json()["results"]["agent"]["provider"] == "offline", run.text
        assert seen == []


def test_a_tenant_without_network_cannot_call_a_model_or_http(tmp_path):
    with recording_server() as (url, seen), tenant_gateway(closed={"revoke": ["network"]}, open={}) as gw:
        # granted (the default), the same node reaches the tenant's endpoint
        assert gw.upload("open", "http", [{"id": "get", "type": "HTTPRequestNode",
                                           "config": {"url": url, "method": "POST", "json": {}}}]).status_code == 201
        assert gw.run("open", "http").status_code == 200 and len(seen) == 1
        seen.clear()
        up = gw.upload("closed", "http", [{"id": "get", "type": "HTTPRequestNode", "config": {"url": url}}])
        assert up.status_code == 422 and "network" in up.text
        up = gw.upload("closed", "llm", [{"id": "agent", "type": "LLMAgentNode",
                                          "config": {"provider": "openai", "base_url": url, "prompt": "x"}}])
        assert up.status_code == 422 and "network" in up.text
        # the provider given at run time instead
        assert gw.upload("closed", "llm2", [{"id": "agent", "type": "LLMAgentNode",
                                             "config": {"prompt": "x"}}]).status_code == 201
        run = gw.run("closed", "llm2", {"agent": {"provider": "openai", "base_url": url}})
        assert run.status_code == 422 and "network" in _error(run)["message"], run.text
        assert seen == []


# -- host environment: ${ENV} -------------------------------------------------------------------

def test_env_references_are_refused_in_run_parameters_and_inline_workflows(monkeypatch):
    monkeypatch.setenv("HOST_SECRET", "the-host-secret-value")
    inline = {"nodes": [{"id": "leak", "type": "PythonCodeNode",
                         "config": {"code": "result = data", "data": "${HOST_SECRET}"}}], "connections": []}
    safe = {"nodes": [{"id": "ok", "type": "PythonCodeNode", "config": {"code": "result = 1"}}], "connections": []}
    with tenant_gateway(acme={}) as gw:
        # nested in an upload
        up = gw.upload("acme", "nested", [{"id": "sub", "type": "WorkflowNode", "config": {"workflow": inline}}])
        assert up.status_code == 422 and "HOST_SECRET" in up.text and "the-host-secret-value" not in up.text
        # an inline workflow given as a run parameter
        assert gw.upload("acme", "sub", [{"id": "sub", "type": "WorkflowNode",
                                          "config": {"workflow": safe}}]).status_code == 201
        run = gw.run("acme", "sub", {"sub": {"workflow": inline}})
        assert run.status_code == 422, run.text
        assert "HOST_SECRET" in run.text and "the-host-secret-value" not in run.text
        # a plain run parameter
        assert gw.upload("acme", "echo", [{"id": "echo", "type": "PythonCodeNode",
                                           "config": {"code": "result = data"}}]).status_code == 201
        run = gw.run("acme", "echo", {"echo": {"data": {"deep": ["${HOST_SECRET}"]}}})
        assert run.status_code == 422 and "the-host-secret-value" not in run.text, run.text
        # ... and through a connection, into an inline workflow built at run time
        nodes = [{"id": "make", "type": "PythonCodeNode", "config": {"code": f"result = {inline!r}"}},
                 {"id": "sub", "type": "WorkflowNode", "config": {"workflow": safe}}]
        conn = [{"from": "make", "to": "sub", "mapping": {"result": "workflow"}}]
        assert gw.upload("acme", "built", nodes, conn).status_code == 201
        run = gw.run("acme", "built")
        assert run.status_code == 422 and "HOST_SECRET" in run.text, run.text
        assert "the-host-secret-value" not in run.text


def test_node_types_inside_a_run_parameter_workflow_are_checked(tmp_path):
    marker = tmp_path / "inner-ran"
    inner = {"nodes": [{"id": "mcp", "type": "MCPClientNode", "config": {"server_config": _marker_command(marker)}}],
             "connections": []}
    safe = {"nodes": [{"id": "ok", "type": "PythonCodeNode", "config": {"code": "result = 1"}}], "connections": []}
    with tenant_gateway(acme={}) as gw:
        assert gw.upload("acme", "sub", [{"id": "sub", "type": "WorkflowNode",
                                          "config": {"workflow": safe}}]).status_code == 201
        run = gw.run("acme", "sub", {"sub": {"workflow": inner}})
        assert run.status_code == 422 and _error(run)["type"] == "SecurityError", run.text
        assert "host_process" in _error(run)["message"]
    assert not marker.exists()


# -- files: workflow_path, readers and writers -------------------------------------------------

def test_workflow_path_outside_the_tenant_directory_is_refused_without_an_existence_oracle(tmp_path):
    host_file = tmp_path / "host-workflow.yaml"
    host_file.write_text("nodes:\n  - {id: a, type: PythonCodeNode, config: {code: 'result = 1'}}\n")
    missing = tmp_path / "no-such-file.yaml"
    with tenant_gateway(acme={}) as gw:
        replies = {}
        for label, path in (("exists", host_file), ("missing", missing), ("passwd", Path("/etc/passwd")),
                            ("dotdot", Path("../../../../etc/passwd"))):
            up = gw.upload("acme", f"p-{label}", [{"id": "sub", "type": "WorkflowNode",
                                                    "config": {"workflow_path": str(path)}}])
            assert up.status_code == 422, (label, up.text)
            replies[label] = up.json()["error"]["problems"][0]["message"].replace(str(path), "<path>")
        assert len(set(replies.values())) == 1, replies  # the same answer whether or not the file exists
        assert "outside tenant 'acme''s own directory" in replies["exists"]

        # at run time too
        safe = {"nodes": [{"id": "ok", "type": "PythonCodeNode", "config": {"code": "result = 1"}}],
                "connections": []}
        assert gw.upload("acme", "sub", [{"id": "sub", "type": "WorkflowNode",
                                          "config": {"workflow": safe}}]).status_code == 201
        run = gw.run("acme", "sub", {"sub": {"workflow": None, "workflow_path": str(host_file)}})
        assert run.status_code == 422 and _error(run)["type"] == "SecurityError", run.text

        # a workflow file in the tenant's own directory works, by a relative path
        from kailash.api.tenancy import tenant_files_dir

        (tenant_files_dir("acme") / "inner.yaml").write_text(host_file.read_text())
        assert gw.upload("acme", "own", [{"id": "sub", "type": "WorkflowNode",
                                          "config": {"workflow_path": "inner.yaml"}}]).status_code == 201
        assert gw.run("acme", "own").json()["results"] == {"sub": {"result": 1}}


def test_file_readers_and_writers_stay_inside_the_tenant_directory(tmp_path):
    outside = tmp_path / "written-by-tenant.txt"
    with tenant_gateway(acme={}) as gw:
        for name, node in (("read", {"type": "TextReaderNode", "config": {"file_path": "/etc/passwd"}}),
                           ("write", {"type": "TextWriterNode", "config": {"file_path": str(outside),
                                                                          "data": "x"}})):
            assert gw.upload("acme", name, [{"id": name, **node}]).status_code == 201
            run = gw.run("acme", name)
            assert run.status_code == 422 and _error(run)["type"] == "SecurityError", run.text
            assert "root:" not in run.text
        assert not outside.exists()
        # relative paths are files in the tenant's own directory
        nodes = [{"id": "w", "type": "TextWriterNode", "config": {"file_path": "notes/today.txt", "data": "hi"}},
                 {"id": "r", "type": "TextReaderNode", "config": {"file_path": "notes/today.txt"}}]
        assert gw.upload("acme", "notes", nodes, [{"from": "w", "to": "r", "mapping": {}}]).status_code == 201
        assert gw.run("acme", "notes").json()["results"]["r"]["data"] == "hi"
        from kailash.api.tenancy import tenant_files_dir

        assert (tenant_files_dir("acme") / "notes" / "today.txt").read_text() == "hi"
    with tenant_gateway(nofiles={"revoke": ["files"]}) as gw:
        up = gw.upload("nofiles", "read", [{"id": "r", "type": "CSVReaderNode", "config": {"file_path": "a.csv"}}])
        assert up.status_code == 422 and "'files'" in up.text


# -- databases -----------------------------------------------------------------------------------

def test_tenant_sql_cannot_reach_the_gateways_storage_or_other_tenants():
    postgres_or_skip()
    with tenant_gateway(acme={}, victim={}) as gw:
        assert gw.upload("victim", "secret-plan", [{"id": "p", "type": "PythonCodeNode",
                                                    "config": {"code": "result = 'plan'"}}]).status_code == 201
        victim, registry_schema = gw.schema("victim"), f"kreg_{gw.tag}"
        assert gw.upload("acme", "sql", [{"id": "q", "type": "SQLDatabaseNode",
                                          "config": {"connection_string": "postgresql://127.0.0.1:5432/test",
                                                     "query": "SELECT 1 AS one"}}]).status_code == 201
        attacks = {
            "other tenant's workflows": f"SELECT name, document FROM {victim}.workflows",
            "every key digest": f"SELECT key_digest FROM {registry_schema}.api_keys",
            "insert a key": f"INSERT INTO {registry_schema}.api_keys VALUES ('d', 'acme', 'p', 0, false)",
            "own storage tables": f"SELECT * FROM {gw.schema('acme')}.runs",
            "become the storage role": "SET ROLE postgres",
            "two statements": "SELECT 1; DROP SCHEMA " + victim + " CASCADE",
            "read a server file": "SELECT pg_read_file('/etc/passwd') AS f",
            "copy a server file": "COPY (SELECT 1) TO '/tmp/kailash-tenant-copy.txt'",
            "make a role": "CREATE ROLE sneaky LOGIN SUPERUSER",
        }
        for label, query in attacks.items():
            run = gw.run("acme", "sql", {"q": {"query": query}})
            assert run.status_code == 422, (label, run.text)
            assert "plan" not in run.text and "key_digest" not in run.text.replace(query, ""), label
        # naming the storage role in the connection string does not work either (nor options, nor a socket)
        for cs in ("postgresql://postgres@127.0.0.1:5432/test",
                   "postgresql://127.0.0.1:5432/test?options=-c%20role%3Dpostgres",
                   "postgresql:///test?host=/var/run/postgresql"):
            run = gw.run("acme", "sql", {"q": {"connection_string": cs,
                                               "query": f"SELECT count(*) AS n FROM {victim}.workflows"}})
            assert run.status_code == 422, (cs, run.text)
        # what the tenant may do: its own tables, in its own schema, as its own role
        for query in ("CREATE TABLE notes (x int)", "INSERT INTO notes VALUES (7)"):
            assert gw.run("acme", "sql", {"q": {"query": query, "fetch": "none"}}).status_code == 200
        got = gw.run("acme", "sql", {"q": {"query": "SELECT x, current_user AS who, current_schema() AS s "
                                                    "FROM notes"}})
        row = got.json()["results"]["q"]["data"][0]
        assert row == {"x": 7, "who": gw.registry.require_tenant("acme").database_role, "s": gw.schema("acme")}
    psycopg = postgres_or_skip()
    with psycopg.connect(PG_URL) as conn:  # the storage still has the victim's workflow? (dropped with the test)
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_sqlite_files_and_memory_databases_are_the_tenants_own(tmp_path):
    host_db = tmp_path / "host.db"
    with tenant_gateway(acme={}, other={}) as gw:
        for tenant in ("acme", "other"):
            assert gw.upload(tenant, "sql", [{"id": "q", "type": "SQLDatabaseNode",
                                              "config": {"connection_string": "sqlite:///:memory:",
                                                         "query": "SELECT 1"}}]).status_code == 201
        run = gw.run("acme", "sql", {"q": {"connection_string": f"sqlite:///{host_db}", "query": "SELECT 1"}})
        assert run.status_code == 422 and _error(run)["type"] == "SecurityError", run.text
        assert not host_db.exists()
        for query in (f"ATTACH DATABASE '{host_db}' AS h", f"VACUUM INTO '{host_db}'"):  # SQL that opens files
            run = gw.run("acme", "sql", {"q": {"query": query, "fetch": "none"}})
            assert run.status_code == 422 and ("not authorized" in run.text or "authorization denied" in run.text), run.text
        assert not host_db.exists()
        assert gw.run("acme", "sql", {"q": {"query": "CREATE TABLE mine (secret TEXT)", "fetch": "none"}}
                      ).status_code == 200
        assert gw.run("acme", "sql", {"q": {"query": "INSERT INTO mine VALUES ('acme-only')", "fetch": "none"}}
                      ).status_code == 200
        peek = gw.run("other", "sql", {"q": {"query": "SELECT secret FROM mine"}})
        assert peek.status_code == 422 and "acme-only" not in peek.text, peek.text
        # a relative SQLite path is a file in the tenant's directory
        assert gw.run("acme", "sql", {"q": {"connection_string": "sqlite:///own.db",
                                            "query": "CREATE TABLE t (x int)", "fetch": "none"}}).status_code == 200
        from kailash.api.tenancy import tenant_files_dir

        assert (tenant_files_dir("acme") / "own.db").exists()


# -- code, and node types that declare nothing ---------------------------------------------------

def test_code_capability_and_undeclared_node_types():
    from kailash.nodes.base import Node, NodeParameter

    class HostToucherNode(Node):  # an operator's custom node that does not say what it touches
        def get_parameters(self):
            return {"data": NodeParameter(default=None)}

        def run(self, **inputs):
            return {"result": "touched"}

    with tenant_gateway(nocode={"revoke": ["code"]}, acme={}) as gw:
        up = gw.upload("nocode", "calc", [{"id": "c", "type": "PythonCodeNode", "config": {"code": "result = 1"}}])
        assert up.status_code == 422 and "'code'" in up.text
        up = gw.upload("acme", "custom", [{"id": "h", "type": "HostToucherNode", "config": {}}])
        assert up.status_code == 422 and "does not declare" in up.text
        with gw.client(None) as http:  # the operator's own namespace may use it
            doc = {"nodes": [{"id": "h", "type": "HostToucherNode", "config": {}}], "connections": []}
            assert http.post("/workflows", json={"name": "custom", "workflow": doc}).status_code == 201


def test_revoking_a_capability_applies_to_stored_workflows():
    with tenant_gateway(acme={}) as gw:
        assert gw.upload("acme", "calc", [{"id": "c", "type": "PythonCodeNode",
                                           "config": {"code": "result = 2"}}]).status_code == 201
        assert gw.run("acme", "calc").json()["results"] == {"c": {"result": 2}}
        gw.registry.set_capabilities("acme", revoke=["code"])
        run = gw.run("acme", "calc")
        assert run.status_code in (403, 409) and "'code'" in run.text, run.text
