"""Seed pattern 2 (Direct Node Execution), as written; the file paths point at tmp files."""

from __future__ import annotations

import json


def test_direct_node_execution(tmp_path, monkeypatch):
    (tmp_path / "data.csv").write_text("id,name,email\n1,ada,ada@example.com\n2,grace,grace@example.com\n")
    monkeypatch.chdir(tmp_path)

    # --- the sample, as written ------------------------------------------------------------------
    from kailash.nodes.data.readers import CSVReaderNode
    from kailash.nodes.data.writers import JSONWriterNode

    # Direct execution
    csv_reader = CSVReaderNode(config={"file_path": "data.csv"})
    data = csv_reader.execute()

    # Process data
    processed_data = [{"id": row["id"], "name": row["name"].upper()}
                      for row in data["data"]]

    # Write results
    json_writer = JSONWriterNode(config={"file_path": "output.json"})
    json_writer.execute(data=processed_data)
    # --- end of sample ---------------------------------------------------------------------------

    assert data == {"data": [{"id": 1, "name": "ada", "email": "ada@example.com"},
                             {"id": 2, "name": "grace", "email": "grace@example.com"}]}
    assert json.loads((tmp_path / "output.json").read_text()) == [{"id": 1, "name": "ADA"}, {"id": 2, "name": "GRACE"}]


def test_direct_execution_validates_inputs(tmp_path):
    import pytest

    from kailash.errors import NodeConfigurationError, NodeExecutionError
    from kailash.nodes.data.readers import CSVReaderNode
    from kailash.nodes.data.writers import JSONWriterNode

    with pytest.raises(NodeConfigurationError, match=r"node <unnamed> \(CSVReaderNode\) has invalid inputs:\n  - parameter 'file_path' is required"):
        CSVReaderNode(config={}).execute()
    with pytest.raises(NodeExecutionError, match=r"file '.*data.csv' does not exist"):
        CSVReaderNode(config={"file_path": str(tmp_path / "data.csv")}).execute()
    with pytest.raises(NodeConfigurationError, match=r"unknown parameter 'dta' .*did you mean 'data'"):
        JSONWriterNode(config={"file_path": str(tmp_path / "o.json")}).execute(dta=[1])
