"""Seed pattern 17 (Workflow Studio Visual Development), as written, against a real gateway.

The gateway serves on 127.0.0.1 (any free port) from a thread; the sample's placeholders
are filled in: the Studio URL is that gateway's, ``token`` and ``"your-api-key"`` are its
API key, and ``StudioClient()`` finds the gateway through ``KAILASH_GATEWAY_URL``.
"""

from __future__ import annotations

import json

import pytest

KEY = "pattern-17-key-0123456789"


@pytest.fixture
def studio(monkeypatch):
    from kailash.api.gateway import WorkflowGateway

    running = WorkflowGateway(port=0, api_keys=[KEY], log_level="warning").serve_in_thread()
    monkeypatch.setenv("KAILASH_GATEWAY_URL", running.url)
    yield running
    running.stop()


def create_data_processing_workflow():
    from kailash.nodes.code.python import PythonCodeNode
    from kailash.nodes.data.readers import CSVReaderNode
    from kailash.nodes.data.writers import JSONWriterNode
    from kailash.workflow import Workflow

    workflow = Workflow("data_processing", description="keep paid orders, add VAT")
    workflow.add_node("reader", CSVReaderNode(), file_path="orders.csv")
    workflow.add_node("enrich", PythonCodeNode(code="""
result = [dict(row, total=round(row['amount'] * 1.2, 2)) for row in data if row['status'] == 'paid']
"""))
    workflow.add_node("writer", JSONWriterNode(), file_path="paid.json")
    workflow.connect("reader", "enrich")
    workflow.connect("enrich", "writer")
    return workflow


def test_studio_import_and_upload(studio, tmp_path, monkeypatch):
    (tmp_path / "orders.csv").write_text("id,amount,status\n1,10.0,paid\n2,5.5,open\n3,20.0,paid\n")
    monkeypatch.chdir(tmp_path)
    token = KEY
    studio_url = studio.url

    # --- the sample, as written (placeholders filled) --------------------------------------------
    # Export workflow from Python for visual editing
    from kailash.utils.export import WorkflowExporter  # noqa: F401 - the sample imports it

    # Create workflow programmatically
    workflow = create_data_processing_workflow()

    # Export for Studio import
    workflow.save("workflow.yaml", format="yaml")

    # Import to Studio via API
    import requests
    with open("workflow.yaml", "rb") as f:
        response = requests.post(
            f"{studio_url}/api/workflows/import",
            files={"workflow": f},
            headers={"Authorization": f"Bearer {token}"}
        )

    # Or use Studio API client
    from kailash.api.studio import StudioClient
    client = StudioClient(api_key="pattern-17-key-0123456789")
    client.upload_workflow(workflow)
    # --- end of sample ---------------------------------------------------------------------------

    assert response.status_code == 201, response.text
    assert response.json()["name"] == "data_processing"
    assert [w["name"] for w in client.list_workflows()] == ["data_processing"]

    # What the Studio opens is the workflow that was saved, and it runs on the server.
    from kailash.workflow import Workflow

    opened = client.download_workflow("data_processing")
    assert opened.to_dict()["nodes"] == Workflow.load("workflow.yaml").to_dict()["nodes"]
    assert opened.to_dict()["connections"] == workflow.to_dict()["connections"]
    out = client.run("data_processing")
    assert out["status"] == "completed"
    expected = [{"id": 1, "amount": 10.0, "status": "paid", "total": 12.0},
                {"id": 3, "amount": 20.0, "status": "paid", "total": 24.0}]
    assert out["results"]["enrich"]["result"] == expected
    assert json.loads((tmp_path / "paid.json").read_text()) == expected

    # The Studio page itself is served by the same gateway, with no key.
    page = requests.get(f"{studio_url}/studio", timeout=10)
    assert page.status_code == 200 and "Kailash Studio" in page.text


def test_studio_import_refuses_bad_files_and_keys(studio, tmp_path):
    import requests

    bad = tmp_path / "bad.yaml"
    bad.write_text("name: broken\nnodes:\n  - {id: a, type: CSVReaderNod}\n  - {id: b, type: JSONWriterNode, "
                   "config: {file_path: out.json, colour: red}}\nconnections:\n  - {from: a, to: ghost}\n")
    url = f"{studio.url}/api/workflows/import"
    with bad.open("rb") as f:
        response = requests.post(url, files={"workflow": f}, headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
    assert response.status_code == 422
    messages = [p["message"] for p in response.json()["error"]["problems"]]
    assert any("CSVReaderNod" in m and "CSVReaderNode" in m for m in messages)  # with the close match
    assert any("colour" in m for m in messages)
    assert len(messages) >= 2

    with bad.open("rb") as f:
        refused = requests.post(url, files={"workflow": f}, headers={"Authorization": "Bearer wrong"}, timeout=10)
    assert refused.status_code == 401
