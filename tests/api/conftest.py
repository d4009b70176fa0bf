"""Fixtures for the gateway tests: real workflows, real gateways, in-process clients."""

from __future__ import annotations

import pytest
from gateway_test_helpers import API_KEY, GateNode, make_workflows


@pytest.fixture
def gateway():
    from kailash.api.gateway import WorkflowGateway

    gw = WorkflowGateway(port=0, api_keys=[API_KEY])
    for name, wf in make_workflows().items():
        gw.register_workflow(name, wf)
    return gw


@pytest.fixture
def client(gateway):
    from starlette.testclient import TestClient

    with TestClient(gateway.app) as c:
        yield c


@pytest.fixture
def gate():
    GateNode.gate.clear()
    while GateNode.entered.acquire(blocking=False):
        pass
    yield GateNode
    GateNode.gate.set()
