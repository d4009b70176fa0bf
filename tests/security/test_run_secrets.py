"""Secrets of a run stay with the run, and are redacted at every boundary.

* A password inside a ``connection_string`` (URL user info) given as a run parameter
  never reaches the run record, the raised error, or a live event.
* Secrets are kept per run: nothing process-global grows with the number of runs.
* A ``Secret`` minted by sandboxed code is not trusted to scrub text: it cannot blank
  arbitrary words in the host's audit log or run records.
"""

from __future__ import annotations

import json

import pytest

from kailash.errors import KailashError
from kailash.nodes.base import Node, NodeParameter, register_node
from kailash.nodes.code.python import PythonCodeNode
from kailash.runtime import LocalRuntime
from kailash.security import secrets as secrets_mod
from kailash.security.audit import audit_event
from kailash.security.config import SecurityConfig, security_context
from kailash.security.secrets import Secret
from kailash.workflow import Workflow

PASSWORD = "pg-pa55word-9f3k"


@register_node(category="test")
class _ConnectNode(Node):
    """Fails quoting its connection string, as a careless driver error would."""

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {"connection_string": NodeParameter(type=str, required=True),
                "api_token": NodeParameter(type=str, default=None, secret=True),
                "fail": NodeParameter(type=bool, default=True)}

    def run(self, connection_string: str, api_token: str | None = None, fail: bool = True) -> dict:
        if fail:
            raise RuntimeError(f"could not connect to {connection_string} with token {api_token}")
        return {"ok": True}


def _workflow() -> Workflow:
    wf = Workflow("connect")
    wf.add_node("db", _ConnectNode(connection_string="sqlite:///x.db"))
    return wf


def test_a_url_password_in_a_run_parameter_is_redacted_everywhere(tmp_path):
    rt = LocalRuntime(store=tmp_path / "runs.db")
    events: list[dict] = []
    params = {"db": {"connection_string": f"postgresql://app:{PASSWORD}@127.0.0.1:5432/test",
                     "api_token": "tok-declared-secret-77"}}
    with pytest.raises(KailashError) as info:
        rt.execute(_workflow(), parameters=params, observers=[events.append])
    record = rt.get_run(info.value.run_id)
    shown = {"error": str(info.value), "record": json.dumps(record.to_dict(), default=str),
             "events": json.dumps(events, default=str)}
    for where, text in shown.items():
        assert PASSWORD not in text, where
        assert "tok-declared-secret-77" not in text, where
    assert "postgresql://app:***@127.0.0.1:5432/test" in shown["record"]  # the rest stays readable
    assert "could not connect" in shown["error"]


def test_a_successful_run_records_parameters_without_the_password(tmp_path):
    rt = LocalRuntime(store=tmp_path / "runs.db")
    _, run_id = rt.execute(_workflow(), parameters={"db": {"fail": False,
                                                           "connection_string": f"postgresql://app:{PASSWORD}@h/db"}})
    text = json.dumps(rt.get_run(run_id).to_dict(), default=str)
    assert PASSWORD not in text and "postgresql://app:***@h/db" in text


def test_nothing_global_grows_per_run(tmp_path):
    wf = Workflow("tokens")
    wf.add_node("mint", PythonCodeNode(code="result = 1"))
    rt = LocalRuntime(store=None)
    before = len(secrets_mod.known_secret_values())
    for i in range(300):
        Secret(f"per-run-secret-{i:04d}")  # minted outside any run: remembered nowhere
        rt.execute(wf, parameters={"mint": {"token": Secret(f"param-secret-{i:04d}")}})
    assert len(secrets_mod.known_secret_values()) == before == 0
    assert not any(isinstance(v, set) and len(v) >= 300 for v in vars(secrets_mod).values())


def test_secrets_are_known_inside_their_own_run_only():
    with secrets_mod.run_secrets("run-a", {"n": {"password": Secret("alpha-secret-1")}}) as a:
        assert "alpha-secret-1" in secrets_mod.known_secret_values()
        with secrets_mod.run_secrets("run-b", None):
            assert "alpha-secret-1" not in secrets_mod.known_secret_values()
        assert a.redact("x alpha-secret-1 y") == "x *** y"
    assert secrets_mod.known_secret_values() == frozenset()


def test_a_sandbox_minted_secret_cannot_blank_words_in_the_audit_log(tmp_path):
    log = tmp_path / "audit.jsonl"
    cfg = SecurityConfig(allowed_directories=[str(tmp_path)], enable_audit_logging=True, audit_log_path=str(log))
    from kailash.security.sandbox.codec import ResultRefused, encode

    with pytest.raises(ResultRefused):  # a worker's reply cannot carry a Secret at all
        encode({"token": Secret("the")})
    minted = secrets_mod.sandbox_secret("the")  # and one rebuilt from untrusted data never scrubs text
    assert isinstance(minted, Secret) and str(minted) == "***"  # still hidden when shown itself
    with security_context(cfg), secrets_mod.run_secrets("run-x", None):
        rec = audit_event("sandbox_violation", config=cfg, node_id="mint", reason="the code tried the network",
                          got=minted)
        assert "the" not in secrets_mod.known_secret_values()
    assert rec["reason"] == "the code tried the network"
    line = log.read_text()
    assert "the code tried the network" in line and '"got": "***"' in line


def test_the_gateway_never_serves_the_password(tmp_path):
    from starlette.testclient import TestClient

    from kailash.api.gateway import WorkflowGateway

    gw = WorkflowGateway(port=0, api_keys=["k-test-0123456789"])
    gw.register_workflow("connect", _workflow(), allow_overrides={"db": ["connection_string"]})
    headers = {"X-API-Key": "k-test-0123456789"}
    params = {"db": {"connection_string": f"postgresql://app:{PASSWORD}@127.0.0.1:5432/test"}}
    with TestClient(gw.app) as client:
        reply = client.post("/workflows/connect/execute", json={"parameters": params}, headers=headers)
        body = reply.text
        run_id = reply.json().get("run_id")
        run = client.get(f"/runs/{run_id}", headers=headers).text
        listed = client.get("/runs", headers=headers).text
    for where, text in {"execute": body, "run": run, "list": listed}.items():
        assert PASSWORD not in text, (where, text)
    assert "app:***@127.0.0.1" in run
