"""Credentials that are not declared secret still never reach an export.

A password in a URL's user info, an API key in a URL's query string, and a token in a
custom header (by its name, or listed in ``secret_headers``) are written as
``${ENV}`` references, in YAML, JSON and the container files, like declared secrets.
"""

from __future__ import annotations

import json

import pytest

from kailash.nodes.api import HTTPRequestNode
from kailash.nodes.api.rest import RESTClientNode
from kailash.nodes.data.sql import SQLDatabaseNode
from kailash.utils.export import WorkflowExporter
from kailash.workflow import Workflow

SECRETS = ["pa55-url-word", "qs-api-key-123456", "hdr-token-abcdef", "custom-sig-778899", "db-pa55word"]


def leaky_workflow() -> Workflow:
    wf = Workflow("leaky")
    wf.add_node("fetch", HTTPRequestNode(url="https://svc:pa55-url-word@api.example.com/v1?api_key=qs-api-key-123456&x=1"))
    wf.add_node("rest", RESTClientNode(base_url="https://api.example.com", resource="/items",
                                       headers={"Accept": "application/json", "X-Vendor-Token": "hdr-token-abcdef",
                                        "X-Routing": "custom-sig-778899"},
                                       secret_headers=["X-Routing"]))
    wf.add_node("db", SQLDatabaseNode(connection_string="postgresql://app:db-pa55word@127.0.0.1:5432/test",
                                      query="SELECT 1"))
    # config added after construction (as Studio and add_node(**config) do) is checked too
    wf.add_node("late", "HTTPRequestNode", url="http://127.0.0.1/x", headers={"X-Auth-Token": "hdr-token-abcdef"})
    return wf


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_url_and_header_credentials_are_exported_as_references(tmp_path, fmt):
    path = getattr(WorkflowExporter(leaky_workflow()), f"to_{fmt}")(tmp_path / f"wf.{fmt}")
    text = path.read_text()
    assert not [s for s in SECRETS if s in text], text
    doc = WorkflowExporter(leaky_workflow()).to_dict()
    cfg = {n["id"]: n["config"] for n in doc["nodes"]}
    assert cfg["fetch"]["url"].startswith("${") and cfg["db"]["connection_string"].startswith("${")
    assert cfg["rest"]["headers"]["Accept"] == "application/json"  # ordinary headers stay
    assert cfg["rest"]["headers"]["X-Vendor-Token"].startswith("${")
    assert cfg["rest"]["headers"]["X-Routing"].startswith("${")
    assert cfg["late"]["headers"]["X-Auth-Token"].startswith("${")


def test_container_exports_carry_no_credentials(tmp_path):
    files = WorkflowExporter(leaky_workflow()).to_docker(tmp_path / "docker")
    for f in files:
        text = f.read_text(errors="replace")
        assert not [s for s in SECRETS if s in text], f


def test_urls_without_credentials_and_templates_are_kept():
    wf = Workflow("plain")
    wf.add_node("fetch", HTTPRequestNode(url="https://api.example.com/v1?page=2"))
    wf.add_node("rest", RESTClientNode(base_url="https://api.example.com", headers={"Authorization": "Bearer {token}"}))
    cfg = {n["id"]: n["config"] for n in WorkflowExporter(wf).to_dict()["nodes"]}
    assert cfg["fetch"]["url"] == "https://api.example.com/v1?page=2"
    assert cfg["rest"]["headers"]["Authorization"] == "Bearer {token}"
    assert json.dumps(cfg)
