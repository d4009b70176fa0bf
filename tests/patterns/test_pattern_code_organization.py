"""Best Practices "5. Code Organization", as written: ``customers.csv`` is a real file and
``validate_customer_data`` / ``enrich_customer_data`` are real local functions passed in
as inputs through runtime parameters."""

from __future__ import annotations

import pytest

from kailash.errors import NodeExecutionError
from kailash.nodes.code.python import PythonCodeNode  # the sample uses these without importing them
from kailash.nodes.data.readers import CSVReaderNode
from kailash.runtime import LocalRuntime
from kailash.workflow import Workflow


def validate_customer_data(rows):
    bad = [r["id"] for r in rows if "@" not in str(r["email"])]
    if bad:
        raise ValueError(f"invalid email for customer(s) {bad}")
    return rows


def enrich_customer_data(rows):
    return [{**r, "domain": r["email"].split("@")[1], "name": r["name"].title()} for r in rows]


FUNCTIONS = {
    "validate_data": {"validate_customer_data": validate_customer_data},
    "enrich_data": {"enrich_customer_data": enrich_customer_data},
}


def build():
    # --- the sample, as written ------------------------------------------------------------------
    # Good: Clear, self-documenting workflow
    workflow = Workflow()

    # Data ingestion phase
    csv_reader = CSVReaderNode(config={"file_path": "customers.csv"})
    data_validator = PythonCodeNode(config={
        "code": "result = validate_customer_data(data)"
    })
    workflow.add_node("read_customers", csv_reader)
    workflow.add_node("validate_data", data_validator)
    workflow.connect("read_customers", "validate_data")

    # Processing phase
    enrichment = PythonCodeNode(config={
        "code": "result = enrich_customer_data(data)"
    })
    workflow.add_node("enrich_data", enrichment)
    workflow.connect("validate_data", "enrich_data")
    # --- end of sample ---------------------------------------------------------------------------
    return workflow


def test_ingestion_validation_and_enrichment(tmp_path, monkeypatch):
    (tmp_path / "customers.csv").write_text("id,name,email\n1,ada lovelace,ada@analytical.org\n2,grace hopper,grace@navy.mil\n")
    monkeypatch.chdir(tmp_path)
    results, _ = LocalRuntime().execute(build(), parameters=FUNCTIONS)
    assert results["enrich_data"]["result"] == [
        {"id": 1, "name": "Ada Lovelace", "email": "ada@analytical.org", "domain": "analytical.org"},
        {"id": 2, "name": "Grace Hopper", "email": "grace@navy.mil", "domain": "navy.mil"},
    ]


def test_invalid_data_stops_the_run_at_the_validation_step(tmp_path, monkeypatch):
    (tmp_path / "customers.csv").write_text("id,name,email\n1,ada,ada@x.org\n2,bob,not-an-email\n")
    monkeypatch.chdir(tmp_path)
    runtime = LocalRuntime()
    with pytest.raises(NodeExecutionError, match=r"node 'validate_data' \(PythonCodeNode\) failed at line 1 of its code: "
                       r"ValueError: invalid email for customer\(s\) \[2\]") as info:
        runtime.execute(build(), parameters=FUNCTIONS)
    assert list(info.value.results) == ["read_customers"]
    record = runtime.get_run(info.value.run_id)
    assert [(n.node_id, n.status) for n in record.nodes] == [("read_customers", "completed"), ("validate_data", "failed")]
