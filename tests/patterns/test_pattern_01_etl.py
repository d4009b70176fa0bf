"""Seed pattern 1 (Linear Pipeline / ETL), as written; the file paths point at tmp files."""

from __future__ import annotations

import json

from kailash.runtime import LocalRuntime


def test_linear_pipeline_etl(tmp_path, monkeypatch):
    (tmp_path / "input.csv").write_text("id,name,city\n1,Ada,London\n2,Grace,Arlington\n3,Alan,Wilmslow\n")
    monkeypatch.chdir(tmp_path)  # the sample's relative paths ("input.csv", "output.json") resolve here

    # --- the sample, as written ------------------------------------------------------------------
    from kailash.workflow import Workflow  # noqa: I001 - the sample's import order
    from kailash.nodes.data.readers import CSVReaderNode
    from kailash.nodes.code.python import PythonCodeNode
    from kailash.nodes.data.writers import JSONWriterNode

    workflow = Workflow()

    # Add nodes
    reader = CSVReaderNode(config={"file_path": "input.csv"})
    transformer = PythonCodeNode(
        config={
            "code": """
result = []
for row in data:
    row['processed'] = True
    result.append(row)
""",
            "imports": []
        }
    )
    writer = JSONWriterNode(config={"file_path": "output.json"})

    workflow.add_node("reader", reader)
    workflow.add_node("transformer", transformer)
    workflow.add_node("writer", writer)

    # Connect in sequence
    workflow.connect("reader", "transformer")
    workflow.connect("transformer", "writer")
    # --- end of sample ---------------------------------------------------------------------------

    results, run_id = LocalRuntime().execute(workflow)

    expected = [
        {"id": 1, "name": "Ada", "city": "London", "processed": True},
        {"id": 2, "name": "Grace", "city": "Arlington", "processed": True},
        {"id": 3, "name": "Alan", "city": "Wilmslow", "processed": True},
    ]
    assert results["transformer"]["result"] == expected
    assert results["writer"] == {"file_path": "output.json", "records_written": 3}
    assert json.loads((tmp_path / "output.json").read_text()) == expected
    record = LocalRuntime().get_run(run_id)
    assert record.status == "completed"
    assert [n.node_id for n in record.nodes] == ["reader", "transformer", "writer"]


def test_linear_pipeline_with_absolute_paths_survives_save_and_load(tmp_path):
    from kailash.nodes.code.python import PythonCodeNode
    from kailash.nodes.data.readers import CSVReaderNode
    from kailash.nodes.data.writers import JSONWriterNode
    from kailash.workflow import Workflow

    (tmp_path / "input.csv").write_text("id,name\n1,Ada\n")
    workflow = Workflow()
    workflow.add_node("reader", CSVReaderNode(config={"file_path": str(tmp_path / "input.csv")}))
    workflow.add_node("transformer", PythonCodeNode(config={"code": "result = []\nfor row in data:\n"
                                                             "    row['processed'] = True\n    result.append(row)\n",
                                                             "imports": []}))
    workflow.add_node("writer", JSONWriterNode(config={"file_path": str(tmp_path / "output.json")}))
    workflow.connect("reader", "transformer")
    workflow.connect("transformer", "writer")
    workflow.save(tmp_path / "etl.yaml")
    loaded = Workflow.load(tmp_path / "etl.yaml")
    results, _ = LocalRuntime().execute(loaded)
    assert results["transformer"]["result"] == [{"id": 1, "name": "Ada", "processed": True}]
    assert json.loads((tmp_path / "output.json").read_text()) == [{"id": 1, "name": "Ada", "processed": True}]
