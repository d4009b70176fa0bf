"""Seed deployment pattern 16 (Configuration Management), run with a real config.yaml.

The configuration is ``tests/patterns/deploy_16/config.yaml``: read orders from CSV, add
line totals, route by region to a JSON writer (eu), a CSV writer (us) and a catch-all
branch. The sample's ``globals()[node_config["type"]]`` finds the node classes imported
at the top of this module, as it would in a user's script.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from kailash.errors import UnknownNodeTypeError
from kailash.nodes.code.python import PythonCodeNode  # noqa: F401 - found by the sample through globals()
from kailash.nodes.data.readers import CSVReaderNode  # noqa: F401
from kailash.nodes.data.writers import CSVWriterNode, JSONWriterNode  # noqa: F401
from kailash.nodes.logic.operations import SwitchNode  # noqa: F401
from kailash.runtime import LocalRuntime
from kailash.utils.export import WorkflowExporter
from kailash.workflow import Workflow

CONFIG = Path(__file__).parent / "deploy_16" / "config.yaml"
ORDERS = """order_id,region,quantity,unit_price
A-1,eu,2,9.99
A-2,us,1,120.00
A-3,apac,5,3.50
A-4,eu,10,1.25
A-5,us,3,19.90
A-6,latam,1,42.00
"""


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    shutil.copy(CONFIG, tmp_path / "config.yaml")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "orders.csv").write_text(ORDERS)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def build_from_config() -> Workflow:
    # --- the sample, as written ---------------------------------------------------------------
    import yaml

    # Load configuration
    with open("config.yaml", "r") as f:  # noqa: UP015 - the sample's own words
        config = yaml.safe_load(f)

    # Create workflow with configuration
    workflow = Workflow()

    for node_config in config["nodes"]:
        node_class = globals()[node_config["type"]]
        node = node_class(config=node_config["config"])
        workflow.add_node(node_config["id"], node)

    for connection in config["connections"]:
        workflow.connect(connection["from"], connection["to"], connection.get("output_key"))
    # ------------------------------------------------------------------------------------------
    return workflow


def check_outputs(workdir: Path, results) -> None:
    eu = json.loads((workdir / "output" / "eu_orders.json").read_text())
    assert [(r["order_id"], r["total"]) for r in eu] == [("A-1", 19.98), ("A-4", 12.5)]
    with open(workdir / "output" / "us_orders.csv", newline="") as f:
        us = list(csv.DictReader(f))
    assert [(r["order_id"], r["total"]) for r in us] == [("A-2", "120.0"), ("A-5", "59.7")]
    assert results["unrouted"]["result"] == ["A-3", "A-6"]
    assert results["us_writer"]["rows_written"] == 2


def test_workflow_built_from_config_runs(workdir):
    workflow = build_from_config()
    assert list(workflow.nodes) == ["reader", "enrich", "router", "eu_writer", "us_writer", "unrouted"]
    results, run_id = LocalRuntime().execute(workflow)
    check_outputs(workdir, results)
    assert LocalRuntime().get_run(run_id).status == "completed"


def test_changing_the_configuration_changes_the_workflow_not_the_code(workdir):
    import yaml

    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["nodes"][2]["config"]["outputs"] = ["eu", "us", "apac"]
    config["nodes"].append(
        {"id": "apac_writer", "type": "JSONWriterNode", "config": {"file_path": "output/apac_orders.json"}}
    )
    config["connections"].append({"from": "router", "to": "apac_writer", "output_key": "apac"})
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    results, _ = LocalRuntime(store=None).execute(build_from_config())
    apac = json.loads((workdir / "output" / "apac_orders.json").read_text())
    assert [r["order_id"] for r in apac] == ["A-3"]
    assert results["unrouted"]["result"] == ["A-6"]


def test_configured_workflow_exports_and_reloads_identically(workdir):
    workflow = build_from_config()
    exported = WorkflowExporter(workflow).to_yaml(workdir / "exported.yaml", config={"version": "2.0.0"})
    reloaded = Workflow.load(exported)
    assert reloaded.version == "2.0.0"
    results, _ = LocalRuntime(store=None).execute(reloaded)
    check_outputs(workdir, results)


def test_a_mistyped_node_type_in_the_config(workdir):
    import yaml

    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["nodes"][0]["type"] = "CSVReaderNod"
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(KeyError, match="CSVReaderNod"):  # the sample's globals() lookup
        build_from_config()
    # the registry lookup (add_node with a type name) says what was meant
    workflow = Workflow()
    with pytest.raises(UnknownNodeTypeError, match="unknown node type 'CSVReaderNod'; did you mean CSVReaderNode"):
        workflow.add_node("reader", config["nodes"][0]["type"], **config["nodes"][0]["config"])
