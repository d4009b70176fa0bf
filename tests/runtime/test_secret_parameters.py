"""Secret parameters given at run time never reach the run record."""

from __future__ import annotations

import json

import pytest

from kailash.errors import NodeExecutionError
from kailash.nodes.base import Node, NodeParameter
from kailash.runtime import LocalRuntime
from kailash.security.secrets import Secret, reveal
from kailash.workflow import Workflow


class LoginNode(Node):
    def get_parameters(self):
        return {
            "user": NodeParameter(type=str, required=True),
            "password": NodeParameter(type=str, required=True, secret=True),
            "fail": NodeParameter(type=bool, default=False),
        }

    def run(self, user, password, fail=False):
        if fail:
            raise RuntimeError("login refused")
        return {"ok": reveal(password) == "hunter2-very-secret", "user": user}


@pytest.mark.parametrize("fail", [False, True])
def test_secret_runtime_parameter_is_redacted_in_the_record(fail):
    wf = Workflow("login")
    wf.add_node("login", LoginNode())
    runtime = LocalRuntime(record_outputs="always")
    params = {"login": {"user": "ada", "password": "hunter2-very-secret", "fail": fail}}
    if fail:
        with pytest.raises(NodeExecutionError) as info:
            runtime.execute(wf, parameters=params)
        run_id = info.value.run_id
    else:
        results, run_id = runtime.execute(wf, parameters=params)
        assert results["login"]["ok"] is True  # the node itself got the real value
    record = runtime.get_run(run_id)
    dumped = json.dumps(record.to_dict(), default=str)
    assert "hunter2-very-secret" not in dumped
    assert record.parameters["login"]["password"] == "***"
    assert record.parameters["login"]["user"] == "ada"


def test_secret_workflow_input_is_redacted_too():
    wf = Workflow("login")
    wf.add_node("login", LoginNode(user="ada"))
    runtime = LocalRuntime()
    _, run_id = runtime.execute(wf, parameters={"password": "hunter2-very-secret"})
    assert "hunter2-very-secret" not in json.dumps(runtime.get_run(run_id).to_dict(), default=str)


def test_a_secret_value_is_accepted_for_a_str_parameter():
    wf = Workflow("login")
    wf.add_node("login", LoginNode(user="ada"))
    results, _ = LocalRuntime().execute(wf, parameters={"login": {"password": Secret("hunter2-very-secret")}})
    assert results["login"]["ok"] is True


class QuotingNode(Node):
    """A careless node that quotes its credential in an error message."""

    def get_parameters(self):
        return {"token": NodeParameter(type=str, required=True, secret=True)}

    def run(self, token):
        raise RuntimeError(f"server refused token {reveal(token)}")


def test_a_credential_quoted_in_an_error_is_scrubbed_from_error_and_record():
    wf = Workflow("careless")
    wf.add_node("call", QuotingNode())
    runtime = LocalRuntime()
    with pytest.raises(NodeExecutionError) as info:
        runtime.execute(wf, parameters={"call": {"token": "tok-abcdef-123456"}})
    assert "tok-abcdef-123456" not in str(info.value)
    assert "server refused token ***" in str(info.value)
    record = runtime.get_run(info.value.run_id)
    assert "tok-abcdef-123456" not in json.dumps(record.to_dict(), default=str)
    assert "***" in record.error and "***" in record.node("call").error
