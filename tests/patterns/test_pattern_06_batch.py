"""Seed pattern 6 (Batch Processing), as written: ``process_record`` is a real local
function passed in as an input, the data comes from a CSV file through CSVReaderNode."""

from __future__ import annotations

import pytest

from kailash.runtime import LocalRuntime
from kailash.workflow import Workflow

pytest.importorskip("pandas", reason="the sample imports pandas (in the 'dev' extra)")


def process_record(record):
    return {"id": record["id"], "total": round(record["price"] * record["qty"], 2)}


def build_batch_processor():
    # --- the sample, as written ------------------------------------------------------------------
    from kailash.nodes.data.readers import CSVReaderNode  # noqa: I001 - the sample's import order
    from kailash.nodes.code.python import PythonCodeNode

    # Batch processor node
    batch_processor = PythonCodeNode(
        config={
            "code": """
import pandas as pd

# Process in batches
batch_size = 1000
results = []

for i in range(0, len(data), batch_size):
    batch = data[i:i+batch_size]
    # Process batch
    processed_batch = [process_record(r) for r in batch]
    results.extend(processed_batch)

result = results
""",
            "imports": ["pandas"]
        }
    )
    # --- end of sample ---------------------------------------------------------------------------
    return CSVReaderNode, batch_processor


def test_batch_processing_of_a_csv_file(tmp_path):
    rows = 2500  # three batches: 1000, 1000, 500
    with open(tmp_path / "orders.csv", "w") as f:
        f.write("id,price,qty\n")
        for i in range(rows):
            f.write(f"{i},{i % 50 + 0.5},{i % 7}\n")
    CSVReaderNode, batch_processor = build_batch_processor()
    workflow = Workflow("batch")
    workflow.add_node("reader", CSVReaderNode(config={"file_path": str(tmp_path / "orders.csv")}))
    workflow.add_node("batch_processor", batch_processor)
    workflow.connect("reader", "batch_processor")

    results, _ = LocalRuntime().execute(workflow, parameters={"batch_processor": {"process_record": process_record}})

    out = results["batch_processor"]["result"]
    assert len(out) == rows
    assert out[0] == {"id": 0, "total": 0.0}
    assert out[1234] == {"id": 1234, "total": round((1234 % 50 + 0.5) * (1234 % 7), 2)}
    assert [r["id"] for r in out] == list(range(rows))


def test_a_failing_record_names_the_node_and_the_line():
    from kailash.errors import NodeExecutionError

    _, batch_processor = build_batch_processor()
    workflow = Workflow("batch")
    workflow.add_node("batch_processor", batch_processor)
    data = [{"id": 1, "price": 1.0, "qty": 1}, {"id": 2, "price": None, "qty": 1}]
    with pytest.raises(NodeExecutionError, match=r"node 'batch_processor' \(PythonCodeNode\) failed at line 11 of its code: TypeError.*\n    11 \| processed_batch = \[process_record\(r\) for r in batch\]"):
        LocalRuntime().execute(workflow, parameters={"batch_processor": {"data": data, "process_record": process_record}})
