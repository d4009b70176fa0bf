"""Red team, wave 2: the run log, the durable queue, schedules, stream runs, captured
output, /metrics and the workflow schema, attacked through a real gateway.

Each test plays an attack that worked (or was suspected to) and asserts the secure outcome.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

import pytest
from starlette.testclient import TestClient

from kailash.api.gateway import WorkflowGateway
from kailash.nodes.base import Node, NodeParameter
from kailash.security.secrets import Secret, reveal
from kailash.workflow import Workflow

API_KEY = "redteam-wave2-gateway-key"
HEADERS = {"X-API-Key": API_KEY}
REG_SECRET = "sk-registered-REDTEAM-7f3a9c"


class EchoingServiceNode(Node):
    """A node holding a credential whose service echoes it back (as an echo server or a
    misbehaving API does): the value reaches the node's outputs, its printed output and,
    through a downstream node, another node's error."""

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {"api_key": NodeParameter(type=(str, Secret), required=True, secret=True, description="key")}

    def run(self, api_key: Any) -> dict[str, Any]:
        value = reveal(api_key)
        print(f"service answered for key {value}")
        return {"echo": {"authorization": f"Bearer {value}"}}


class QuotingNode(Node):
    """Fails quoting its input (a downstream node with a chatty error message)."""

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {"echo": NodeParameter(type=dict, required=True, description="what the service answered")}

    def run(self, echo: dict[str, Any]) -> dict[str, Any]:
        raise ValueError(f"cannot use {echo['authorization']}")


def _store_bytes(home) -> bytes:
    """Everything the gateway stored on disk (SQLite files and their write-ahead logs)."""
    return b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file())


def _wait(client, run_id, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.get(f"/runs/{run_id}", headers=HEADERS).json()
        if run.get("status") in ("completed", "failed"):
            return run
        time.sleep(0.02)
    raise AssertionError(f"run {run_id} did not end: {run}")


# -- 1. a registration secret in the stored run record ---------------------------------------------

@pytest.mark.parametrize("mode", ["sync", "async", "failing"])
def test_a_registration_secret_never_reaches_the_stored_run_record(_isolated_home, mode):
    """Attack: register a workflow whose node holds a key (a Secret in its config); its service
    echoes the key into the node's outputs and printed text, and a downstream node quotes it in
    its error. Before: with the default durability the final record went through the run log,
    past the gateway's redacting store, so the key sat in the SQLite file in plain text (and only
    GET /runs/{id} masked it)."""
    wf = Workflow(f"echo-{mode}")
    wf.add_node("svc", EchoingServiceNode(api_key=Secret(REG_SECRET)))
    if mode == "failing":
        wf.add_node("use", QuotingNode())
        wf.connect("svc", "use", mapping={"echo": "echo"})
    gw = WorkflowGateway(port=0, api_keys=[API_KEY])
    gw.register_workflow("echo", wf)
    with TestClient(gw.app) as c:
        url = "/workflows/echo/execute" + ("?async=true" if mode == "async" else "")
        reply = c.post(url, json={}, headers=HEADERS)
        assert reply.status_code in (200, 202, 422), reply.text
        assert REG_SECRET not in reply.text
        run = _wait(c, reply.json()["run_id"])
        assert run["status"] == ("failed" if mode == "failing" else "completed")
        assert REG_SECRET not in str(run)
        gw.workspace(None).runs.flush() if hasattr(gw.workspace(None).runs, "flush") else None
    time.sleep(0.1)
    stored = _store_bytes(_isolated_home)
    assert stored, "the gateway stored nothing"
    assert REG_SECRET.encode() not in stored


# -- 2. secrets in the durable queue and in schedules --------------------------------------------

QUEUED_SECRET = "sk-queued-REDTEAM-51c0de"
URL_PASSWORD = "pw-REDTEAM-url-9917"


class DsnNode(Node):
    """Takes a connection URL (not declared secret: its password is found in the URL)."""

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {"dsn": NodeParameter(type=str, required=False, default="", description="where to connect")}

    def run(self, dsn: str) -> dict[str, Any]:
        return {"ok": True}


def _queue_gateway() -> WorkflowGateway:
    gw = WorkflowGateway(port=0, api_keys=[API_KEY], queue_slots=1)
    keyed = Workflow("keyed")
    keyed.add_node("svc", EchoingServiceNode())
    gw.register_workflow("keyed", keyed)
    dsn = Workflow("dsn")
    dsn.add_node("db", DsnNode())
    gw.register_workflow("dsn", dsn)
    return gw


@pytest.mark.parametrize("workflow, parameters, node, parameter", [
    # a secret parameter given as a workflow input (offered to the entry node), not under its node id
    ("keyed", {"api_key": QUEUED_SECRET}, "svc", "api_key"),
    # a password inside a URL of an undeclared parameter: run records mask it, the queue stored it
    ("dsn", {"db": {"dsn": f"postgresql://app:{URL_PASSWORD}@127.0.0.1/x"}}, "db", "dsn"),
    ("dsn", {"dsn": f"https://api.example/v1?api_key={URL_PASSWORD}"}, "db", "dsn"),
])
@pytest.mark.parametrize("route", ["async", "schedule"])
def test_no_secret_value_is_written_to_the_queue_or_a_schedule(_isolated_home, workflow, parameters, node,
                                                               parameter, route):
    """Attack: pass a credential where the queue's check does not look (a workflow input instead of
    ``{node: {...}}``, a URL password in an undeclared parameter), or in a schedule's parameters (not
    checked at all): before, it was written in plain text to queue.db / the schedule store."""
    gw = _queue_gateway()
    with TestClient(gw.app) as c:
        if route == "async":
            reply = c.post(f"/workflows/{workflow}/execute?async=true", json={"parameters": parameters},
                           headers=HEADERS)
        else:
            reply = c.post("/schedules", json={"workflow": workflow, "every": 3600, "parameters": parameters},
                           headers=HEADERS)
        assert reply.status_code == 422, reply.text
        err = reply.json()["error"]
        assert err["code"] == "secret_not_queueable" and err["node_id"] == node and err["parameter"] == parameter
        assert QUEUED_SECRET not in reply.text and URL_PASSWORD not in reply.text
        # the synchronous run may carry it (never queued) and its record masks it
        sync = c.post(f"/workflows/{workflow}/execute", json={"parameters": parameters}, headers=HEADERS)
        assert sync.status_code == 200, sync.text
    stored = _store_bytes(_isolated_home)
    assert QUEUED_SECRET.encode() not in stored and URL_PASSWORD.encode() not in stored


# -- 6. /metrics ---------------------------------------------------------------------------------

def test_metrics_label_values_cannot_forge_lines_and_their_number_is_bounded():
    """Attack: node ids and workflow names (uploads, a tenant's too) carrying quotes and newlines to
    forge metric lines; and a stream of fresh node ids growing the gateway's memory without bound.
    Before: every distinct (workflow, node) pair became a series for the life of the process."""
    import re

    from kailash.api.metrics import MAX_SERIES, GatewayMetrics

    m = GatewayMetrics()
    m.event('wf"} 1\nforged_metric 1\n#', {"event": "node_completed", "node_id": 'n\\"\n} 2', "duration": 0.01})
    m.event('wf"} 1\nforged_metric 1\n#', {"event": "run_completed"})
    text = m.render()
    assert "\nforged_metric" not in text
    line = re.compile(r'^(# .*|[a-z_]+(\{([a-z]+="([^"\\\n]|\\\\|\\"|\\n)*",?)*\})? [0-9.e+-]+|)$')
    assert all(line.match(row) for row in text.split("\n")), text
    for i in range(MAX_SERIES * 3):
        m.event(f"wf-{i}", {"event": "node_completed", "node_id": f"node-{i}", "duration": 0.01})
        m.event(f"wf-{i}", {"event": "run_failed"})
    assert len(m._nodes) <= MAX_SERIES + 1 and len(m._runs) <= MAX_SERIES + 2
    text = m.render()
    assert 'workflow="_other",node="_other"' in text and 'kailash_runs_total{workflow="_other",status="failed"}' in text


# -- 4. dead-letter sinks of stream runs ---------------------------------------------------------

def test_a_dead_letter_file_stays_inside_the_tenants_directory_and_the_policy(tmp_path):
    """Attack: an uploaded stream workflow's metadata names ``stream.dead_letter`` = any host path;
    the gateway wrote the failed events there with a plain ``open`` (outside the tenant's directory,
    outside the process-wide policy's allowed directories)."""
    from kailash.errors import SecurityError
    from kailash.nodes.capabilities import TenantScope, tenant_scope
    from kailash.runtime._dead_letter import dead_letter_sink
    from kailash.security import SecurityConfig, set_security_config

    own = tmp_path / "tenant-files" / "acme"
    own.mkdir(parents=True)
    host = tmp_path / "host"
    host.mkdir()
    record = {"run_id": "r", "workflow": "w", "node_id": "n", "error": "e", "event": {}, "ts": 0.0}
    scope = TenantScope(tenant_id="acme", capabilities=frozenset({"files", "network"}), files_dir=str(own))
    with tenant_scope(scope):
        for target in (str(host / "evil.jsonl"), "../../host/evil.jsonl", str(own / ".." / "evil.jsonl")):
            with pytest.raises(SecurityError) as err:
                dead_letter_sink(target)
            assert err.value.parameter == "dead_letter"
        sink = dead_letter_sink("dead.jsonl")  # relative: inside its own directory
        sink.write(record)
        sink.close()
    assert (own / "dead.jsonl").read_text().count("\n") == 1
    no_files = TenantScope(tenant_id="acme", capabilities=frozenset({"network"}), files_dir=str(own))
    with tenant_scope(no_files), pytest.raises(SecurityError) as err:
        dead_letter_sink("dead.jsonl")
    assert "files" in str(err.value)
    set_security_config(SecurityConfig(allowed_directories=[str(own)]))
    try:
        with pytest.raises(SecurityError):
            dead_letter_sink(str(host / "evil.jsonl"))
    finally:
        set_security_config(None)
    assert list(host.iterdir()) == [] and not (tmp_path / "evil.jsonl").exists()


def test_a_tenants_dead_letter_table_needs_the_database_capability(tmp_path):
    """Attack: ``stream.dead_letter = {"connection_string": ..., "table": ...}`` from a tenant without the
    'database' capability (the sink is not a node of the workflow, so the upload's capability check never saw
    it); and a SQLite file outside the tenant's directory."""
    from kailash.errors import KailashError, SecurityError
    from kailash.nodes.capabilities import TenantScope, tenant_scope
    from kailash.runtime._dead_letter import dead_letter_sink

    own = tmp_path / "acme"
    own.mkdir()
    outside = tmp_path / "gateway.db"
    no_db = TenantScope(tenant_id="acme", capabilities=frozenset({"network"}), files_dir=str(own))
    with tenant_scope(no_db), pytest.raises(SecurityError):
        dead_letter_sink({"connection_string": "sqlite:///dead.db", "table": "dead"})
    db = TenantScope(tenant_id="acme", capabilities=frozenset({"network", "database"}), files_dir=str(own))
    with tenant_scope(db), pytest.raises(KailashError):
        dead_letter_sink({"connection_string": f"sqlite:///{outside}", "table": "dead"})
    assert not outside.exists()


# -- 5. captured output ----------------------------------------------------------------------------

PRINTED_SECRET = "Zq9XvT4kLmN8pR2wYb6HjC3"


class PaddedPrintNode(Node):
    """Prints ``pad`` characters, then its credential (a chatty client's debug line)."""

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {"api_key": NodeParameter(type=(str, Secret), required=True, secret=True, description="key"),
                "pad": NodeParameter(type=int, default=0, description="characters printed first")}

    def run(self, api_key: Any, pad: int) -> dict[str, Any]:
        print("x" * pad + f"key={reveal(api_key)}", end="")
        return {"ok": True}


@pytest.mark.parametrize("keep", [4, 9, 15, len(PRINTED_SECRET) - 1])
def test_truncating_captured_output_never_keeps_a_piece_of_a_secret(tmp_path, keep):
    """Attack: print just enough padding that the per-node output limit cuts a secret after ``keep`` of its
    characters. Before: redaction ran on the truncated text, where the secret no longer matched, so its first
    ``keep`` characters were stored (one run per length reveals it all)."""
    from kailash.runtime import LocalRuntime
    from kailash.runtime.capture import LIMIT
    from kailash.runtime.store import SQLiteRunStore

    wf = Workflow("padded")
    wf.add_node("p", PaddedPrintNode())
    store = SQLiteRunStore(str(tmp_path / "runs.db"))
    pad = LIMIT - len("key=") - keep
    LocalRuntime(store=store).execute(wf, parameters={"p": {"api_key": PRINTED_SECRET, "pad": pad}}, run_id="r1")
    store.flush()
    text = store.get_run("r1").output["p"]
    pieces = {PRINTED_SECRET[i:i + 4] for i in range(len(PRINTED_SECRET) - 3)}
    assert not any(piece in text for piece in pieces), text[-200:]
    assert "[output truncated" in text or text.endswith("***")
    stored = _store_bytes(tmp_path)
    assert not any(piece.encode() in stored for piece in pieces)


# -- 3. schedules: impossible cron, slow catch-up, thousands per tenant ---------------------------

def test_a_cron_expression_that_never_fires_is_a_clear_422_not_a_server_error(_isolated_home):
    """Attack: ``0 0 30 2 *`` (February 30th) passes croniter's syntax check, then finding its next fire
    raises CroniterBadDateError: before, POST /schedules answered 500 (a gateway fault)."""
    gw = _queue_gateway()
    with TestClient(gw.app, raise_server_exceptions=False) as c:
        for cron in ("0 0 30 2 *", "0 0 31 4 *"):
            reply = c.post("/schedules", json={"workflow": "dsn", "cron": cron}, headers=HEADERS)
            assert reply.status_code == 422, reply.text
            assert reply.json()["error"]["parameter"] == "cron"
        made = c.post("/schedules", json={"workflow": "dsn", "every": 3600}, headers=HEADERS).json()
        reply = c.patch(f"/schedules/{made['id']}", json={"cron": "0 0 30 2 *", "every": None}, headers=HEADERS)
        assert reply.status_code == 422, reply.text


def test_catching_up_a_per_second_cron_after_days_of_downtime_is_cheap():
    """Attack: a schedule firing every second (``* * * * * *``) with catch-up ``all`` or ``latest``, after three
    days without a gateway. Before: one tick spent ~1.5 s of CPU on it (a new croniter per missed fire, 10,000
    of them to count the dropped ones), so a hundred such schedules stalled every namespace's schedules."""
    from kailash.runtime.schedules import Schedule, due_fires

    now = time.time()
    for catchup in ("all", "latest"):
        s = Schedule(id="s", workflow="w", cron="* * * * * *", created_at=0.0, updated_at=0.0,
                     next_fire_at=now - 3 * 86400, catchup=catchup)
        cpu = time.process_time()
        fires, dropped = due_fires(s, now, grace=60, max_catchup=1000)
        spent = time.process_time() - cpu
        assert len(fires) == (1000 if catchup == "all" else 1) and dropped > 0
        assert fires == sorted(fires) and fires[-1] <= now and all(b - a == 1 for a, b in zip(fires, fires[1:]))
        assert spent < 0.5, f"catch-up '{catchup}' took {spent:.2f} s of CPU"


CODE_DOC = {"name": "tick", "nodes": [{"id": "c", "type": "PythonCodeNode", "config": {"code": "result = 1"}}],
            "connections": []}


def test_a_tenant_cannot_create_schedules_without_bound(tmp_path, monkeypatch):
    """Attack: one tenant creates thousands of every-second schedules (each tick claims them all, each fire is a
    queued run). Before: no limit. Now each namespace holds at most ``max_schedules`` (default
    ``MAX_SCHEDULES``); the next is 429 ``too_many_schedules``, and other namespaces are not affected."""
    from kailash.api import schedule_routes
    from kailash.api.tenancy import TenantRegistry

    assert 0 < schedule_routes.MAX_SCHEDULES <= 1000
    monkeypatch.setattr(schedule_routes, "MAX_SCHEDULES", 5)
    registry = TenantRegistry(home=tmp_path / "tenants-home")
    _, acme = registry.create_tenant("acme", database_schema="acme")
    _, globex = registry.create_tenant("globex", database_schema="globex")
    gw = WorkflowGateway(port=0, tenants=registry, api_keys=[API_KEY], schedule_tick=None)
    with TestClient(gw.app) as c:
        for key in (acme, globex):
            assert c.post("/workflows", headers={"X-API-Key": key}, json={"name": "tick", "workflow": CODE_DOC}
                          ).status_code == 201
        made = [c.post("/schedules", headers={"X-API-Key": acme}, json={"workflow": "tick", "every": 1})
                for _ in range(8)]
        assert [r.status_code for r in made] == [201] * 5 + [429] * 3
        assert made[-1].json()["error"]["code"] == "too_many_schedules"
        assert len(gw.schedules.list(tenant_id="acme")) == 5
        other = c.post("/schedules", headers={"X-API-Key": globex}, json={"workflow": "tick", "every": 1})
        assert other.status_code == 201
        c.delete(f"/schedules/{made[0].json()['id']}", headers={"X-API-Key": acme})
        again = c.post("/schedules", headers={"X-API-Key": acme}, json={"workflow": "tick", "every": 1})
        assert again.status_code == 201


# -- 7. the node catalog and the workflow file schema (no key needed) -----------------------------

def test_a_credential_default_is_never_published_by_the_keyless_catalog_or_schema():
    """Attack: read ``/nodes`` and ``/schema/workflow.json`` without a key. A ``@node`` function written as
    ``def fetch(url, api_key="sk-...")`` (or a DSN default with a password) is not declared secret, and its
    default was published to anyone who can reach the gateway."""
    from kailash import node

    @node
    def redteam_fetch_defaults(url: str, api_key: str = "sk-default-LEAK-1234",
                               dsn: str = "postgresql://app:pw-default-LEAK-99@db/x",
                               client_secret: str = "cs-default-LEAK-42", page_size: int = 50) -> dict:
        return {"ok": True}

    gw = WorkflowGateway(port=0, api_keys=[API_KEY])
    with TestClient(gw.app) as c:
        for path in ("/nodes", "/schema/workflow.json", "/nodes/redteam_fetch_defaults"):
            reply = c.get(path)  # no key
            assert reply.status_code == 200
            assert "LEAK" not in reply.text, path
        info = c.get("/nodes/redteam_fetch_defaults").json()
        params = {p["name"]: p for p in info["parameters"]}
        assert params["page_size"]["default"] == 50  # ordinary defaults are still documented
        assert params["dsn"]["default"] == "postgresql://app:***@db/x"


# -- 2/4. another namespace's runs: queued, running, finished ------------------------------------

SLOW_DOC = {"name": "slow", "nodes": [{"id": "c", "type": "PythonCodeNode",
                                       "config": {"code": "result = sum(range(n))"}}], "connections": []}


def test_another_namespace_cannot_see_stop_or_follow_a_run_queued_running_or_done(tmp_path):
    """Attack: globex (and the gateway's own key) ask for acme's run ids: GET /runs/{id}, its events, and
    POST /runs/{id}/stop, while the run is queued, running and finished. Every answer must be the one for an
    id that does not exist (no 409 'has finished' or 'not a stream run' that would confirm it exists)."""
    from kailash.api.tenancy import TenantRegistry

    registry = TenantRegistry(home=tmp_path / "tenants-home")
    _, acme = registry.create_tenant("acme", database_schema="acme")
    _, globex = registry.create_tenant("globex", database_schema="globex")
    gw = WorkflowGateway(port=0, tenants=registry, api_keys=[API_KEY], queue_slots=1, schedule_tick=None)
    a, g = {"X-API-Key": acme}, {"X-API-Key": globex}

    def probes(run_id: str) -> list[tuple[int, str]]:
        out = []
        for headers in (g, HEADERS):
            for method, path in (("get", f"/runs/{run_id}"), ("post", f"/runs/{run_id}/stop"),
                                 ("get", f"/runs/{run_id}/events")):
                reply = getattr(c, method)(path, headers=headers)
                out.append((reply.status_code, reply.json()["error"]["code"]))
        return out

    with TestClient(gw.app) as c:
        assert c.post("/workflows", headers=a, json={"name": "slow", "workflow": SLOW_DOC}).status_code == 201
        first = c.post("/workflows/slow/execute?async=true", headers=a,
                       json={"parameters": {"c": {"n": 40_000_000}}}).json()
        second = c.post("/workflows/slow/execute?async=true", headers=a,
                        json={"parameters": {"c": {"n": 10}}}).json()
        nobody = probes("0" * 32)
        assert nobody == [(404, "run_not_found")] * 6
        assert second["status"] == "queued", second
        assert probes(second["run_id"]) == nobody  # queued
        assert probes(first["run_id"]) == nobody  # running (or just finished)
        for run in (first, second):
            deadline = time.monotonic() + 60
            while c.get(f"/runs/{run['run_id']}", headers=a).json()["status"] not in ("completed", "failed"):
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert probes(first["run_id"]) == nobody and probes(second["run_id"]) == nobody  # finished
        assert c.get("/runs", headers=g).json()["runs"] == []


def test_a_tenants_queued_reference_is_never_resolved_from_the_gateways_environment(monkeypatch):
    """Attack: a ``${KAILASH_DATABASE_URL}``-style reference in a tenant's queued run (the enqueue checks refuse
    it; a row written by any other path, a schedule made before a policy change, must still not resolve).
    Before: the worker resolved every queued reference from the gateway's environment, tenant or not."""
    from kailash.errors import SecurityError
    from kailash.runtime.queue import resolve_references

    monkeypatch.setenv("REDTEAM_GATEWAY_ONLY", "postgresql://gateway:pw-GATEWAY-ONLY@127.0.0.1/kailash")
    wf = Workflow("keyed")
    wf.add_node("svc", EchoingServiceNode())
    params = {"svc": {"api_key": "${REDTEAM_GATEWAY_ONLY}"}}
    assert reveal(resolve_references(wf, params)["svc"]["api_key"]).startswith("postgresql://gateway")
    with pytest.raises(SecurityError) as err:
        resolve_references(wf, params, allow_env=False)
    assert err.value.node_id == "svc" and err.value.parameter == "api_key"
    assert "pw-GATEWAY-ONLY" not in str(err.value)


def test_an_uploaded_workflows_env_credential_is_masked_in_results_events_and_errors(_isolated_home, monkeypatch):
    """Attack: upload (gateway namespace) a workflow whose node reads ``${REDTEAM_ENV_KEY}`` and whose service
    echoes it; read the sync result, the failed run's problem document, its events and the stored record.
    Before: only a *registered* workflow's config secrets were masked in what the gateway answered."""
    env_key = "sk-env-REDTEAM-0d15ea5e"
    monkeypatch.setenv("REDTEAM_ENV_KEY", env_key)
    doc = {"name": "echo-env", "nodes": [
        {"id": "svc", "type": "EchoingServiceNode", "config": {"api_key": "${REDTEAM_ENV_KEY}"}},
        {"id": "use", "type": "QuotingNode", "config": {}}],
        "connections": [{"from": "svc", "to": "use", "mapping": {"echo": "echo"}}]}
    ok_doc = {"name": "echo-env-ok", "nodes": doc["nodes"][:1], "connections": []}
    gw = WorkflowGateway(port=0, api_keys=[API_KEY])
    with TestClient(gw.app) as c:
        for d in (doc, ok_doc):
            assert c.post("/workflows", json={"name": d["name"], "workflow": d}, headers=HEADERS).status_code == 201
        ok = c.post("/workflows/echo-env-ok/execute", json={}, headers=HEADERS)
        failed = c.post("/workflows/echo-env/execute", json={}, headers=HEADERS)
        assert ok.status_code == 200 and failed.status_code == 422, failed.text
        texts = [ok.text, failed.text]
        for reply in (ok, failed):
            run_id = reply.json()["run_id"]
            texts += [c.get(f"/runs/{run_id}", headers=HEADERS).text,
                      c.get(f"/runs/{run_id}/events", headers=HEADERS).text]
    assert all(env_key not in t for t in texts), [t for t in texts if env_key in t][0][:300]
    assert env_key.encode() not in _store_bytes(_isolated_home)


class MarkerPrintNode(Node):
    """Prints its run's marker many times, yielding the GIL between prints."""

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {"marker": NodeParameter(type=str, required=True, description="what to print")}

    def run(self, marker: str) -> dict[str, Any]:
        for _ in range(60):
            print(marker)
            time.sleep(0.001)
        return {"ok": True}


def _async_marker_node():
    from kailash.nodes.base_async import AsyncNode

    class AsyncMarkerPrintNode(AsyncNode):
        def get_parameters(self) -> dict[str, NodeParameter]:
            return {"marker": NodeParameter(type=str, required=True, description="what to print")}

        async def async_run(self, marker: str) -> dict[str, Any]:
            import asyncio

            for _ in range(60):
                print(marker)
                await asyncio.sleep(0.001)
            return {"ok": True}

    return AsyncMarkerPrintNode


@pytest.mark.parametrize("runtime_name", ["local", "parallel"])
def test_concurrent_runs_never_get_each_others_printed_output(tmp_path, runtime_name):
    """Attack: two tenants' runs at once in one process (gateway worker threads; ParallelRuntime's own
    threads and tasks; async nodes sharing an event loop): what one run's node prints must never be stored
    in the other run's record."""
    import threading

    from kailash.runtime import LocalRuntime
    from kailash.runtime.parallel import ParallelRuntime
    from kailash.runtime.store import SQLiteRunStore

    store = SQLiteRunStore(str(tmp_path / "runs.db"))
    AsyncMarker = _async_marker_node()

    def make(i: int) -> tuple[Workflow, dict[str, Any]]:
        wf = Workflow(f"w{i}")
        wf.add_node("a", MarkerPrintNode())
        wf.add_node("b", AsyncMarker())
        return wf, {"a": {"marker": f"RUN{i}-A"}, "b": {"marker": f"RUN{i}-B"}}

    if runtime_name == "local":  # the gateway's way: one worker thread per run
        def one(i: int) -> None:
            wf, params = make(i)
            LocalRuntime(store=store).execute(wf, parameters=params, run_id=f"r{i}")

        threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    else:  # four runs as tasks of one event loop, each node in ParallelRuntime's threads and tasks
        import asyncio

        async def all_runs() -> None:
            runtime = ParallelRuntime(store=store)
            await asyncio.gather(*[runtime.execute(*make(i), run_id=f"r{i}") for i in range(4)])

        asyncio.run(all_runs())
    store.flush()
    for i in range(4):
        out = store.get_run(f"r{i}").output
        assert out["a"].split() == [f"RUN{i}-A"] * 60
        assert out["b"].split() == [f"RUN{i}-B"] * 60


class CountingNode(Node):
    """Counts its executions (class-wide)."""

    calls: list[str] = []

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {"tag": NodeParameter(type=str, default="", description="a label")}

    def run(self, tag: str) -> dict[str, Any]:
        CountingNode.calls.append(tag)
        return {"n": len(CountingNode.calls)}


def test_a_run_id_already_in_the_queue_is_not_executed_again(_isolated_home):
    """Attack (a race between check and use): the same run id offered twice — a schedule's fire retried after
    its tick rolled back, a second gateway firing the same schedule — while this gateway has a free slot.
    Before: the queue refused the duplicate row (``enqueue`` returned False) and the gateway ran it anyway."""
    import asyncio

    CountingNode.calls.clear()
    wf = Workflow("count")
    wf.add_node("n", CountingNode())
    gw = WorkflowGateway(port=0, api_keys=[API_KEY], queue_slots=4)
    gw.register_workflow("count", wf)
    with TestClient(gw.app) as c:
        c.get("/health")
        workspace = gw.workspace(None)

        async def twice() -> list[Any]:
            gw.runs.worker_factory and gw.runs.worker is None and gw.runs.worker_factory()
            out = []
            for _ in range(2):
                out.append(await gw.runs.start(workspace=workspace, name="count", workflow=wf, parameters={},
                                               limit=None, wait=False, secrets=frozenset(),
                                               run_id="sched-dup-run-0001"))
            return out

        first, second = c.portal.call(twice)
        _wait(c, "sched-dup-run-0001")
        time.sleep(0.3)
    assert CountingNode.calls == [""], CountingNode.calls


def test_a_schedules_parameters_are_bounded_in_size(_isolated_home):
    """Attack: 500 schedules each carrying 10 MiB of parameters (the body limit), firing every second: each
    fire copies them into the queue. Before: stored as given (gigabytes in the schedule store, then the queue)."""
    from kailash.runtime.schedules import MAX_PARAMETERS_BYTES

    gw = _queue_gateway()
    with TestClient(gw.app) as c:
        big = {"db": {"dsn": "x" * (MAX_PARAMETERS_BYTES + 1)}}
        reply = c.post("/schedules", json={"workflow": "dsn", "every": 1, "parameters": big}, headers=HEADERS)
        assert reply.status_code == 422, reply.text[:300]
        assert reply.json()["error"]["parameter"] == "parameters"
        small = c.post("/schedules", json={"workflow": "dsn", "every": 1, "parameters": {"db": {"dsn": "x"}}},
                       headers=HEADERS)
        assert small.status_code == 201
        grown = c.patch(f"/schedules/{small.json()['id']}", json={"parameters": big}, headers=HEADERS)
        assert grown.status_code == 422
    assert len(_store_bytes(_isolated_home)) < MAX_PARAMETERS_BYTES * 4


@pytest.mark.parametrize("mode", ["sync", "async", "failing"])
def test_a_registration_secret_never_reaches_postgresql_run_records_or_the_queue(mode):
    """The same attack on PostgreSQL storage (PostgresRunLog, the PostgreSQL queue): every table of the
    gateway's schemas is read back as text and searched for the key."""
    import uuid

    from tests.security.tenant_gateway import PG_URL, postgres_or_skip

    psycopg = postgres_or_skip()
    from kailash.api.postgres import PostgresStorage

    tag = uuid.uuid4().hex[:10]
    schemas = [f"krt_reg_{tag}", f"krt_def_{tag}"]
    storage = PostgresStorage(PG_URL, registry_schema=schemas[0], default_schema=schemas[1], max_connections=4)
    try:
        wf = Workflow(f"echo-{mode}")
        wf.add_node("svc", EchoingServiceNode(api_key=Secret(REG_SECRET)))
        if mode == "failing":
            wf.add_node("use", QuotingNode())
            wf.connect("svc", "use", mapping={"echo": "echo"})
        gw = WorkflowGateway(port=0, api_keys=[API_KEY], storage=storage)
        gw.register_workflow("echo", wf)
        with TestClient(gw.app) as c:
            url = "/workflows/echo/execute" + ("?async=true" if mode == "async" else "")
            reply = c.post(url, json={}, headers=HEADERS)
            assert REG_SECRET not in reply.text
            run = _wait(c, reply.json()["run_id"])
            assert REG_SECRET not in str(run)
            flush = getattr(gw.workspace(None).runs, "flush", None)
            if flush is not None:
                flush()
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            tables = conn.execute("SELECT table_schema, table_name FROM information_schema.tables "
                                  "WHERE table_schema = ANY(%s)", (schemas,)).fetchall()
            assert tables
            dump = "".join(str(conn.execute(f'SELECT * FROM "{s}"."{t}"').fetchall()) for s, t in tables)
        assert run["run_id"] in dump and REG_SECRET not in dump
    finally:
        storage.close()
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            for s in schemas:
                conn.execute(f'DROP SCHEMA IF EXISTS "{s}" CASCADE')


class LoudNode(Node):
    """Prints ``size`` characters, then the credential it holds."""

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {"size": NodeParameter(type=int, default=0, description="characters printed"),
                "api_key": NodeParameter(type=(str, Secret), required=False, secret=True, default=None,
                                         description="key")}

    def run(self, size: int, api_key: Any) -> dict[str, Any]:
        print("y" * size + (f"key={reveal(api_key)}" if api_key is not None else ""), end="")
        return {"ok": True}


def test_a_runs_captured_output_is_bounded_across_all_its_nodes(tmp_path):
    """Attack: a workflow of many nodes each printing up to the per-node limit (a tenant may upload thousands
    of nodes): before, the record kept 64 KiB per node with no bound per run. Secrets are still never cut
    into pieces where the run's budget runs out."""
    from kailash.runtime import LocalRuntime
    from kailash.runtime.capture import LIMIT, RUN_LIMIT
    from kailash.runtime.store import SQLiteRunStore

    nodes = RUN_LIMIT // LIMIT * 3
    wf = Workflow("loud")
    params: dict[str, Any] = {}
    for i in range(nodes):
        wf.add_node(f"n{i:04d}", LoudNode())
        params[f"n{i:04d}"] = {"size": LIMIT - 10, "api_key": PRINTED_SECRET}
    store = SQLiteRunStore(str(tmp_path / "runs.db"))
    LocalRuntime(store=store).execute(wf, parameters=params, run_id="loud")
    store.flush()
    output = store.get_run("loud").output
    kept = sum(len(t) for t in output.values())
    assert kept <= RUN_LIMIT + 2 * 4096 + 100 * len(output), kept
    pieces = {PRINTED_SECRET[i:i + 4] for i in range(len(PRINTED_SECRET) - 3)}
    assert not any(p in t for t in output.values() for p in pieces)
    assert any("[output truncated" in t for t in output.values())


def test_a_page_on_another_origin_cannot_drive_the_new_state_changing_routes(_isolated_home):
    """Attack: a web page makes the browser of someone running a keyless local gateway send ``no-cors``
    requests to the routes added in this wave: create/change/delete schedules, stop a run. Each must be
    refused before it acts (403 cross_site_request), and a form body must never be read as JSON (415)."""
    gw = WorkflowGateway(port=0, auth=False)
    dsn = Workflow("dsn")
    dsn.add_node("db", DsnNode())
    gw.register_workflow("dsn", dsn)
    evil = {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}
    with TestClient(gw.app, base_url="http://127.0.0.1") as c:
        made = c.post("/schedules", json={"workflow": "dsn", "every": 3600}).json()
        calls = [("post", "/schedules", {"workflow": "dsn", "every": 1}),
                 ("patch", f"/schedules/{made['id']}", {"enabled": False}),
                 ("delete", f"/schedules/{made['id']}", None),
                 ("post", "/runs/0123/stop", None)]
        for method, path, body in calls:
            reply = c.request(method.upper(), path, json=body, headers=evil)
            assert reply.status_code == 403 and reply.json()["error"]["code"] == "cross_site_request", (path, reply.text)
            if body is not None:  # a simple (no-preflight) content type is never read as JSON
                form = c.request(method.upper(), path, content=b"workflow=dsn&every=1",
                                 headers={"Content-Type": "text/plain"})
                assert form.status_code == 415, (path, form.text)
        assert len(c.get("/schedules").json()["schedules"]) == 1
        assert c.get(f"/schedules/{made['id']}").json()["enabled"] is True


def test_a_resumed_run_masks_the_workflows_config_credentials(_isolated_home, monkeypatch):
    """Attack: resume (``POST /runs/{id}/resume`` with ``rerun``) a failed run of an uploaded workflow whose node
    echoes its ``${ENV}`` key, then read the resumed run. Before: the resume route masked only a registered
    workflow's secrets in what it answered."""
    env_key = "sk-env-RESUME-REDTEAM-77aa"
    monkeypatch.setenv("REDTEAM_ENV_KEY", env_key)
    doc = {"name": "echo-env", "nodes": [
        {"id": "svc", "type": "EchoingServiceNode", "config": {"api_key": "${REDTEAM_ENV_KEY}"}},
        {"id": "use", "type": "QuotingNode", "config": {}}],
        "connections": [{"from": "svc", "to": "use", "mapping": {"echo": "echo"}}]}
    gw = WorkflowGateway(port=0, api_keys=[API_KEY])
    with TestClient(gw.app) as c:
        assert c.post("/workflows", json={"name": "echo-env", "workflow": doc}, headers=HEADERS).status_code == 201
        failed = c.post("/workflows/echo-env/execute", json={}, headers=HEADERS)
        assert failed.status_code == 422
        resumed = c.post(f"/runs/{failed.json()['run_id']}/resume", json={"rerun": ["svc"]}, headers=HEADERS)
        assert resumed.status_code == 202, resumed.text
        run = _wait(c, resumed.json()["run_id"])
        texts = [resumed.text, str(run), c.get(f"/runs/{run['run_id']}/events", headers=HEADERS).text]
    assert all(env_key not in t for t in texts), [t for t in texts if env_key in t][0][:400]
    assert env_key.encode() not in _store_bytes(_isolated_home)


def test_reading_an_older_record_masks_registered_secrets_whatever_name_it_carries(_isolated_home):
    """Attack: read a record written before runs scrubbed their config secrets (or by another process)
    through GET /runs/{id}. Before: the read-time mask looked the registration up by the record's workflow
    name, which is the workflow's own name (``echo-internal``), not the registered one (``echo``): no mask."""
    from kailash.runtime.store import RunRecord

    wf = Workflow("echo-internal")
    wf.add_node("svc", EchoingServiceNode(api_key=Secret(REG_SECRET)))
    gw = WorkflowGateway(port=0, api_keys=[API_KEY])
    gw.register_workflow("echo", wf)
    with TestClient(gw.app) as c:
        now = time.time()
        gw.workspace(None).runs.record(RunRecord(
            run_id="old-run-1", workflow="echo-internal", status="completed", started_at=now, ended_at=now,
            outputs={"svc": {"echo": {"authorization": f"Bearer {REG_SECRET}"}}},
            extra={"output": {"svc": f"service answered for key {REG_SECRET}\n"}}))
        gw.workspace(None).runs.record(RunRecord(
            run_id="old-run-2", workflow="echo-internal", status="failed", started_at=now, ended_at=now,
            error=f"node 'use' failed: cannot use Bearer {REG_SECRET}", error_node="use"))
        for path in ("/runs/old-run-1", "/runs/old-run-2", "/runs", "/runs/old-run-2/events"):
            reply = c.get(path, headers=HEADERS)
            assert reply.status_code == 200 and REG_SECRET not in reply.text, (path, reply.text)
            assert "Bearer ***" in reply.text, path


def test_a_tenants_schedules_cannot_flood_the_shared_run_queue(tmp_path):
    """Attack: a tenant limited to 2 concurrent runs makes an every-second schedule with catch-up ``all``;
    after a gateway pause every missed fire is written to the durable queue that all tenants share (claimed
    oldest first), so the other tenants' runs wait behind it. Before: schedules fired into the queue without
    the tenant's ``max_concurrent_runs``; now a fire beyond it waits for a later tick, like a request would."""
    from kailash.api.scheduling import QueueScheduledRun
    from kailash.api.tenancy import TenantRegistry
    from kailash.runtime.schedules import Scheduler

    registry = TenantRegistry(home=tmp_path / "tenants-home")
    _, acme = registry.create_tenant("acme", database_schema="acme", max_concurrent_runs=2)
    gw = WorkflowGateway(port=0, tenants=registry, api_keys=[API_KEY], schedule_tick=None, queue_slots=1)
    with TestClient(gw.app) as c:
        a = {"X-API-Key": acme}
        assert c.post("/workflows", headers=a, json={"name": "tick", "workflow": CODE_DOC}).status_code == 201
        made = c.post("/schedules", headers=a, json={"workflow": "tick", "every": 1, "catchup": "all"})
        assert made.status_code == 201
        worker = gw.queue_worker()
        worker.stop() if hasattr(worker, "stop") else None  # nothing claims: the queue shows what was written
        scheduler = Scheduler(gw.schedules, QueueScheduledRun(gw, worker))
        scheduler.tick(now=time.time() + 60)
        assert gw.run_queue.pending("acme") <= 2, gw.run_queue.pending("acme")


def test_a_queued_or_scheduled_run_is_checked_against_the_tenants_grants_when_it_starts(tmp_path):
    """Attack (check at queue time, use later): a tenant schedules (or queues) a code workflow, then the operator
    revokes its 'code' capability. Before: the fire went through the queue and ran anyway — only requests were
    checked. Now the worker checks the tenant's grants when the run starts, and records it failed."""
    from kailash.api.scheduling import QueueScheduledRun
    from kailash.api.tenancy import TenantRegistry
    from kailash.runtime.schedules import Scheduler

    registry = TenantRegistry(home=tmp_path / "tenants-home")
    _, acme = registry.create_tenant("acme", database_schema="acme")
    gw = WorkflowGateway(port=0, tenants=registry, api_keys=[API_KEY], schedule_tick=None)
    with TestClient(gw.app) as c:
        a = {"X-API-Key": acme}
        assert c.post("/workflows", headers=a, json={"name": "tick", "workflow": CODE_DOC}).status_code == 201
        made = c.post("/schedules", headers=a, json={"workflow": "tick", "every": 3600})
        assert made.status_code == 201
        registry.set_capabilities("acme", revoke=["code"])
        assert c.post("/workflows/tick/execute", headers=a, json={}).status_code == 403  # a request is refused
        report = Scheduler(gw.schedules, QueueScheduledRun(gw, gw.queue_worker())).tick(now=time.time() + 3601)
        assert len(report.fires) == 1
        run_id = report.fires[0].run_id
        deadline = time.monotonic() + 30
        while (run := c.get(f"/runs/{run_id}", headers=a).json()).get("status") not in ("completed", "failed"):
            assert time.monotonic() < deadline, run
            time.sleep(0.05)
        assert run["status"] == "failed" and "code" in str(run["error"]), run
