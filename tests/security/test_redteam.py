"""Red-team attacks at the seams between the trust-boundary pieces of issue 11.

Each test is an attack; it asserts the secure outcome, so it fails when the attack works.
"""

from __future__ import annotations

import tracemalloc

import pytest

from kailash.errors import KailashError, NodeConfigurationError, NodeExecutionError, SecurityError
from kailash.nodes.capabilities import DEFAULT_TENANT_CAPABILITIES, TenantScope, tenant_scope, workflow_problems
from kailash.nodes.logic.expressions import compile_expression
from kailash.security import SecurityConfig
from kailash.security.config import get_security_config, security_context, set_security_config

ISOLATIONS = ["auto", "process"]


@pytest.fixture
def tenant_home(tmp_path, monkeypatch):
    monkeypatch.setenv("KAILASH_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture(params=ISOLATIONS)
def operator_policy(request):
    before = get_security_config()
    set_security_config(SecurityConfig(isolation=request.param, execution_timeout=10.0))
    yield request.param
    set_security_config(before)


def _tenant(tenant_id, **extra):
    from kailash.api.tenant_runs import tenant_policy

    policy = tenant_policy(tenant_id)
    scope = TenantScope(tenant_id=tenant_id, capabilities=DEFAULT_TENANT_CAPABILITIES,
                        files_dir=policy.allowed_directories[0], **extra)
    return policy, scope


# -- bounded conditions: unbound methods reach str.center etc. without the "before" checks -----

@pytest.mark.parametrize("expr", [
    "len(str.center('a', 4 * 10**8)) > 0",
    "len(str.ljust('', 4 * 10**8)) > 0",
    "len(str.zfill('1', 4 * 10**8)) > 0",
    "len(str.join('a' * 100000, [''] * 4000)) > 0",
    "len(str.expandtabs('\\t' * 1000, 400000)) > 0",
    "len(str.replace('a' * 1000, 'a', 'b' * 400000)) > 0",
    "len(int.to_bytes(1, 4 * 10**8, 'big')) > 0",
    # functions that sorted/min/max call themselves, and text made of shared references
    "len(sorted(['\\t' * 900000] * 60, key=str.expandtabs)) > 0",
    "len(str(['x' * 900000] * 1000)) > 0",
    "len('%s' % (['x' * 900000] * 1000,)) > 0",
    "len(f'{[\"x\" * 900000] * 1000!r}') > 0",
])
def test_unbound_builtin_methods_in_a_condition_are_bounded_before_they_run(expr):
    check = compile_expression(expr, node_id="route", parameter="condition")
    tracemalloc.start()
    try:
        with pytest.raises(NodeExecutionError) as err:
            check({})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert err.value.parameter == "condition"
    assert peak < 50 * 1024 * 1024, f"{expr} built {peak // 2**20} MiB before it was stopped"


# -- a tenant's code node replaces the tenant's sandbox policy with its own -------------------

@pytest.mark.parametrize("given", [False, 0, "", "none", {}, {"sandbox": False}, {"allowed_directories": ["/"]}])
def test_a_tenant_node_cannot_pass_a_non_policy_as_security_config(tenant_home, operator_policy, given):
    from kailash.nodes.code.python import PythonCodeNode

    policy, scope = _tenant("acme")
    node = PythonCodeNode(config={"code": "result = 1", "security_config": given}, name="x")
    with security_context(policy), tenant_scope(scope), pytest.raises(NodeConfigurationError) as err:
        node.execute()
    assert err.value.parameter == "security_config" and "SecurityConfig" in str(err.value)


def test_a_tenant_node_with_its_own_wider_policy_still_runs_under_the_tenants(tenant_home, operator_policy, tmp_path):
    from kailash.nodes.code.python import PythonCodeNode

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("host secret")
    wide = SecurityConfig(allowed_directories=[str(outside)], isolation=operator_policy, execution_timeout=10.0)
    policy, scope = _tenant("acme")
    node = PythonCodeNode(config={"code": f"result = open({str(outside / 'secret.txt')!r}).read()",
                                  "security_config": wide}, name="x")
    with security_context(policy), tenant_scope(scope), pytest.raises(KailashError) as err:
        node.execute()
    assert "host secret" not in str(err.value)


# -- the shared worker pool: two tenants' nodes must never share a worker -----------------------

def test_two_tenants_and_the_operator_never_share_a_sandbox_worker_pool(tenant_home, operator_policy):
    from kailash.security.sandbox import runner as sandbox

    acme, _ = _tenant("acme")
    globex, _ = _tenant("globex")
    profiles = {sandbox._profile(p) for p in (acme, globex, get_security_config())}
    assert len(profiles) == 3


# -- node types: everything that names a host resource declares a capability -------------------

_HOST_PARAMETERS = {"file_path", "connection_string", "url", "base_url", "stream_url", "token_url", "server_config",
                    "mcp_servers", "mcp_server", "mcp_config", "command"}


def test_every_node_type_that_takes_a_host_resource_declares_a_capability():
    from kailash.nodes.registry import list_node_types

    undeclared = []
    for name, cls in list_node_types().items():
        caps = getattr(cls, "capabilities", None)
        params = set(_parameters(cls))
        if caps is not None and not caps and params & _HOST_PARAMETERS:
            undeclared.append((name, sorted(params & _HOST_PARAMETERS)))
    assert undeclared == []


def _parameters(cls):
    try:
        return cls(name="probe").get_parameters().keys()
    except Exception:  # a node that cannot be built without configuration
        return ()


# -- ${ENV} three levels down, inside inline workflows given to WorkflowNodes --------------------

def test_env_reference_inside_nested_inline_workflows_is_refused(tenant_home, monkeypatch):
    import kailash.runtime  # noqa: F401 - inner workflows load with a runtime, as in the gateway
    from kailash.workflow.serialization import workflow_from_dict

    monkeypatch.setenv("REDTEAM_HOST_SECRET", "host-secret-value")
    inner = {"name": "inner", "nodes": [{"id": "code", "type": "PythonCodeNode", "config": {
        "code": "result = 1", "imports": [{"deep": ["${REDTEAM_HOST_SECRET}"]}]}}]}
    middle = {"name": "middle", "nodes": [{"id": "wf", "type": "WorkflowNode", "config": {"workflow": inner}}]}
    outer = {"name": "outer", "nodes": [{"id": "wf", "type": "WorkflowNode", "config": {"workflow": middle}}]}
    _, scope = _tenant("acme")
    with tenant_scope(scope):
        try:
            wf = workflow_from_dict(outer)
        except SecurityError as err:
            assert "REDTEAM_HOST_SECRET" in str(err) and "host-secret-value" not in str(err)
            return
        problems = workflow_problems(wf, scope.capabilities, tenant_id="acme")
    assert problems and any("environment" in p for p in problems), problems
    assert "host-secret-value" not in repr(problems)


# -- a password in a tenant's connection string never shows in the error ---------------------

def test_tenant_sql_connection_error_does_not_show_a_password(tenant_home):
    from kailash.nodes.data.sql import SQLDatabaseNode

    _, scope = _tenant("acme", database_role="acme_role_x", database_schema="acme_x",
                       database_password="role-pw-98765")
    node = SQLDatabaseNode(name="db", config={
        "connection_string": "postgresql://127.0.0.1:1/test?password=hunter2-given-pw&connect_timeout=1",
        "query": "SELECT 1", "timeout": 1})
    with tenant_scope(scope), pytest.raises(KailashError) as err:
        node.execute()
    text = str(err.value) + repr(err.value.__dict__)
    assert "hunter2-given-pw" not in text and "role-pw-98765" not in text


# -- protected run parameters: a sub-workflow passes a caller's values on to its inner nodes ------

def _nested_gateway():
    from kailash.api.gateway import WorkflowGateway
    from kailash.nodes.code.python import PythonCodeNode
    from kailash.nodes.data.sql import SQLDatabaseNode
    from kailash.nodes.logic.workflow import WorkflowNode
    from kailash.workflow import Workflow

    inner = Workflow("inner")
    inner.add_node("calc", PythonCodeNode(code="result = x"))
    sql = Workflow("sql")
    sql.add_node("db", SQLDatabaseNode(connection_string="sqlite:///:memory:", query="SELECT 1 AS one"))
    middle = Workflow("middle")
    middle.add_node("deeper", WorkflowNode(workflow=inner))
    outer = Workflow("outer")
    outer.add_node("wf", WorkflowNode(workflow=inner))
    outer.add_node("sqlwf", WorkflowNode(workflow=sql))
    outer.add_node("twice", WorkflowNode(workflow=middle))
    gateway = WorkflowGateway(port=0, api_keys=["redteam-key-123456"])
    gateway.register_workflow("outer", outer)
    return gateway


@pytest.mark.parametrize("parameters", [
    {"wf": {"calc.code": "result = 42"}},                                   # node.param form
    {"wf": {"input_mapping": {"x": "calc.code"}, "x": "result = 42"}},     # a mapping given at run time
    {"sqlwf": {"query": "SELECT 42 AS one"}},                              # a name an entry node takes
    {"sqlwf": {"db.connection_string": "sqlite:////tmp/redteam.db"}},
    {"twice": {"deeper.calc.code": "result = 42"}},                         # two levels down
    {"twice": {"code": "result = 42"}},
])
def test_run_parameters_cannot_replace_protected_parameters_of_inner_workflows(tenant_home, parameters):
    from starlette.testclient import TestClient

    with TestClient(_nested_gateway().app) as client:
        reply = client.post("/workflows/outer/execute", json={"parameters": parameters},
                            headers={"X-API-Key": "redteam-key-123456"})
    assert reply.status_code == 422, reply.text
    assert reply.json()["error"]["code"] == "parameter_not_overridable"


def test_inner_workflow_data_inputs_still_pass(tenant_home):
    from starlette.testclient import TestClient

    with TestClient(_nested_gateway().app) as client:
        reply = client.post("/workflows/outer/execute", headers={"X-API-Key": "redteam-key-123456"},
                            json={"parameters": {"wf": {"x": 5}, "twice": {"deeper.calc.x": 6}}})
    assert reply.status_code == 200, reply.text
    assert reply.json()["results"]["wf"] == {"result": 5} and reply.json()["results"]["twice"] == {"result": 6}


# -- the other way of serving workflows: MCP tools must keep the same protected parameters --------

def test_an_mcp_tool_call_cannot_replace_a_served_workflows_code(tenant_home, tmp_path):
    anyio = pytest.importorskip("anyio")
    pytest.importorskip("mcp")
    from kailash.api.mcp_server import build_workflow_mcp_server
    from kailash.nodes.code.python import PythonCodeNode
    from kailash.workflow import Workflow

    marker = tmp_path / "pwned"
    wf = Workflow("doubler")
    wf.add_node("double", PythonCodeNode(code="result = x * 2"))
    server = build_workflow_mcp_server(wf)
    evil = f"open({str(marker)!r}, 'w').write('x')\nresult = 1"

    async def call(arguments):
        try:
            return await server.call_tool("doubler", arguments)
        except Exception as exc:  # the SDK raises ToolError for a refused call
            return exc

    refused = anyio.run(call, {"parameters": {"double": {"code": evil, "x": 1}}})
    assert isinstance(refused, Exception) and "may not replace" in str(refused), refused
    assert not marker.exists()
    ok = anyio.run(call, {"parameters": {"double": {"x": 21}}})
    assert not isinstance(ok, Exception) and "42" in str(ok), ok


# -- secrets in run parameters that a sub-workflow passes on, and in inline workflows -------------

@pytest.mark.parametrize("parameters", [
    {"wf": {"db.connection_string": "postgresql://app:PWLEAK-one@127.0.0.1:1/x?connect_timeout=1"}},
    {"wf": {"db.connection_string": "postgresql://app@127.0.0.1:1/x?connect_timeout=1", "db.password": "PWLEAK-two"}},
    {"wf": {"workflow": {"name": "i2", "nodes": [{"id": "db", "type": "SQLDatabaseNode", "config": {
        "query": "SELECT 1", "connection_string": "postgresql://app:PWLEAK-three@127.0.0.1:1/x?connect_timeout=1"}}]}}},
    {"wf": {"workflow": {"name": "i4", "nodes": [{"id": "h", "type": "HTTPRequestNode", "config": {
        "url": "http://u:PWLEAK-five@127.0.0.1:1/x", "timeout": 1}}]}}},
])
def test_secrets_passed_through_a_sub_workflow_never_show(tenant_home, parameters):
    from starlette.testclient import TestClient

    from kailash.api.gateway import WorkflowGateway

    headers = {"X-API-Key": "redteam-key-123456"}
    inner = {"name": "inner", "nodes": [{"id": "db", "type": "SQLDatabaseNode", "config": {"query": "SELECT 1"}}]}
    doc = {"name": "outer", "nodes": [{"id": "wf", "type": "WorkflowNode", "config": {"workflow": inner}}]}
    with TestClient(WorkflowGateway(port=0, api_keys=["redteam-key-123456"]).app) as client:
        assert client.post("/workflows", json={"name": "outer", "workflow": doc}, headers=headers).status_code == 201
        reply = client.post("/workflows/outer/execute", json={"parameters": parameters}, headers=headers)
        run_id = reply.json()["run_id"]
        seen = [reply.text, client.get(f"/runs/{run_id}", headers=headers).text,
                client.get(f"/runs/{run_id}/events", headers=headers).text, client.get("/runs", headers=headers).text]
    assert reply.status_code == 422
    assert not [text for text in seen if "PWLEAK" in text]


# -- PostgreSQL: what a tenant's role can still see of the others --------------------------------

@pytest.mark.xfail(strict=True, reason="tenants share one PostgreSQL database: pg_namespace (and CONNECT to the "
                   "server's other databases) shows every tenant's schema name to any tenant role; needs a "
                   "database per tenant, or schema names that do not carry tenant ids")
def test_a_tenant_role_cannot_list_other_tenants_schemas():
    from tests.security.tenant_gateway import tenant_gateway

    with tenant_gateway(acme={}, victim={}) as gw:
        victim = gw.schema("victim")
        assert gw.upload("acme", "sql", [{"id": "q", "type": "SQLDatabaseNode", "config": {
            "connection_string": "postgresql://127.0.0.1:5432/test",
            "query": "SELECT string_agg(nspname, ',') AS names FROM pg_namespace"}}]).status_code == 201
        run = gw.run("acme", "sql")
        assert run.status_code == 200, run.text
        assert victim not in run.text


# -- a custom subclass of a harmless built-in node inherits its empty capability declaration ----

def test_a_custom_subclass_of_a_builtin_node_must_declare_its_own_capabilities(tenant_home):
    from kailash.nodes.logic.operations import MergeNode
    from kailash.workflow import Workflow

    class RedteamHostNode(MergeNode):  # an operator's node that reaches the host, declaring nothing
        def run(self, **inputs):
            return {"merged": open("/etc/hostname").read()}

    class RedteamDeclaredNode(MergeNode):
        capabilities = frozenset()

    wf = Workflow("w")
    wf.add_node("host", RedteamHostNode(name="host"))
    wf.add_node("fine", RedteamDeclaredNode(name="fine"))
    problems = workflow_problems(wf, DEFAULT_TENANT_CAPABILITIES, tenant_id="acme")
    assert len(problems) == 1 and "'host' (RedteamHostNode)" in problems[0] and "does not declare" in problems[0]


# -- cross-site: odd content types, Host tricks, websockets, against a keyless gateway ------------

_JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(("headers", "status"), [
    ({**_JSON, "Origin": "http://evil.example", "Host": "127.0.0.1:8000"}, 403),
    ({"Content-Type": "text/plain", "Host": "127.0.0.1"}, 415),
    ({"Content-Type": "text/plain; application/json", "Host": "127.0.0.1"}, 415),
    ({"Content-Type": "application/x-www-form-urlencoded", "Host": "127.0.0.1"}, 415),
    ({**_JSON, "Host": "evil.example"}, 403),                                   # DNS rebinding
    ({**_JSON, "Host": "127.0.0.1.nip.io"}, 403),
    ({**_JSON, "Host": "localhost:8000", "Origin": "http://localhost:9999"}, 403),  # another local port
    ({**_JSON, "Host": "127.0.0.1", "Origin": "null"}, 403),                    # sandboxed iframe, file://
    ({**_JSON, "Host": "127.0.0.1", "Sec-Fetch-Site": "cross-site"}, 403),
    ({**_JSON, "Host": "127.0.0.1", "Sec-Fetch-Site": "same-site"}, 403),
    ({**_JSON, "Host": "127.0.0.1:8000", "Origin": "http://127.0.0.1:8000@evil.example"}, 403),
    ({**_JSON, "Host": "127.0.0.1", "X-Forwarded-Host": "evil.example", "Origin": "http://evil.example"}, 403),
])
def test_a_keyless_gateway_refuses_what_a_web_page_could_send(tenant_home, headers, status):
    import json

    from starlette.testclient import TestClient

    from kailash.api.gateway import WorkflowGateway

    doc = {"name": "w", "nodes": [{"id": "c", "type": "PythonCodeNode", "config": {"code": "result = 1"}}]}
    with TestClient(WorkflowGateway(port=0, auth=False).app, base_url="http://127.0.0.1") as client:
        reply = client.post("/workflows", content=json.dumps({"name": "w", "workflow": doc}), headers=headers)
        assert reply.status_code == status, reply.text
        assert client.get("/workflows/w", headers={"Host": "127.0.0.1"}).status_code == 404


@pytest.mark.parametrize("headers", [{"Origin": "http://evil.example"}, {"Host": "evil.example"},
                                     {"Sec-Fetch-Site": "cross-site"}])
def test_a_keyless_gateway_refuses_cross_site_websockets(tenant_home, headers):
    from starlette.testclient import TestClient, WebSocketDenialResponse

    from kailash.api.gateway import WorkflowGateway

    with TestClient(WorkflowGateway(port=0, auth=False).app, base_url="http://127.0.0.1") as client:
        with pytest.raises(WebSocketDenialResponse) as denied:
            with client.websocket_connect("/ws/runs/none", headers=headers):
                pass
    assert denied.value.status_code in (403, 421)


# -- Python guards: the allowed modules' own ways to run or reach things -----------------------------

@pytest.mark.parametrize(("code", "imports"), [
    ("import types\nresult = str(types.CodeType(0,0,0,0,0,0,b'',(),(),(),'f','f','f',1,b'',b''))", ["types"]),
    ("import types\nresult = str(types.FunctionType)", ["types"]),
    ("import io\nresult = io.FileIO('/etc/hostname').read()", ["io"]),
    ("import functools\nresult = str(functools.partial(getattr, len)('__self__'))", ["functools"]),
    ("import operator\nresult = str(operator.attrgetter('__self__')(len))", ["operator"]),
    ("import string\nresult = string.Formatter().format('{0.__class__}', 1)", ["string"]),
    ("import dataclasses\nD = dataclasses.make_dataclass('D', [('x=__import__(\"os\").getpid()', int)])\n"
     "result = 1", ["dataclasses"]),
    ("import typing\ndef f(x: '__import__(\"os\").getpid()'):\n    pass\nresult = str(typing.get_type_hints(f))",
     ["typing"]),
    ("try:\n    1/0\nexcept Exception as e:\n    t = e.__traceback__\nresult = 1", []),
])
def test_allowed_modules_give_no_way_around_the_guards(run, code, imports):
    with pytest.raises(SecurityError):
        run(code, imports=imports)
    assert run.healthy()


# -- tenants whose ids, schemas or domains collide after normalisation ----------------------------

def test_tenants_never_share_a_schema_or_a_domain_after_normalisation(tmp_path):
    from kailash.api.tenancy import TenantRegistry
    from kailash.errors import TenantError

    registry = TenantRegistry(home=str(tmp_path))
    registry.create_tenant("acme-corp", domain="acme.example.com")
    for tenant_id, options in [("acme.corp", {}), ("acme_corp", {}), ("other", {"database_schema": "t_acme_corp"}),
                               ("third", {"domain": "ACME.example.com."})]:
        with pytest.raises(TenantError):
            registry.create_tenant(tenant_id, **options)
    assert [t.tenant_id for t in registry.list_tenants()] == ["acme-corp"]


# -- run_timeout: a statement blocked in the database outlives the run, in an abandoned thread ------

def test_a_tenants_sql_statement_never_outlives_its_run_timeout():
    import time

    from tests.security.tenant_gateway import tenant_gateway

    with tenant_gateway(acme={"run_timeout": 2.0}) as gw:
        nodes = [{"id": "q", "type": "SQLDatabaseNode", "config": {
            "connection_string": "postgresql://127.0.0.1:5432/test", "query": "SELECT pg_sleep(12) AS s"}}]
        assert gw.upload("acme", "sql", nodes).status_code == 201
        for name, query, fetch in (("lift", "SET statement_timeout = 0", "none"),
                                   ("show", "SHOW statement_timeout", "all")):
            assert gw.upload("acme", name, [{"id": "q", "type": "SQLDatabaseNode", "config": {
                "connection_string": "postgresql://127.0.0.1:5432/test", "query": query, "fetch": fetch}}]
            ).status_code == 201
        # lifting the bound in one statement does not carry over to the next use of the connection
        for _ in range(3):
            assert gw.run("acme", "lift").status_code == 200
        shown = gw.run("acme", "show")
        assert shown.status_code == 200, shown.text
        assert shown.json()["results"]["q"]["data"][0]["statement_timeout"] == "2s"
        started = time.monotonic()
        run = gw.run("acme", "sql")
        assert run.status_code == 422 and time.monotonic() - started < 6.0, run.text


# -- run_timeout: a call that blocks outside Python is bounded by what is left of the run ---

def test_a_tenants_slow_http_call_never_outlives_its_run_timeout():
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from tests.security.tenant_gateway import tenant_gateway

    class Slow(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            time.sleep(15)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with tenant_gateway(acme={"run_timeout": 2.0}) as gw:
            url = f"http://127.0.0.1:{server.server_address[1]}/slow"
            assert gw.upload("acme", "slow", [{"id": "h", "type": "HTTPRequestNode", "config": {
                "url": url, "timeout": 60}}]).status_code == 201
            started = time.monotonic()
            run = gw.run("acme", "slow")
            assert run.status_code in (422, 504) and time.monotonic() - started < 4.0, run.text
            assert "run_timeout" in run.text, run.text
    finally:
        server.shutdown()
        server.server_close()
