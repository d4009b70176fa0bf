"""Seed pattern 3 (Conditional Routing), as written, run with a record and with a list."""

from __future__ import annotations

import pytest

from kailash.nodes.code.python import PythonCodeNode  # the sample uses it without importing it


def build():
    # --- the sample, as written ------------------------------------------------------------------
    from kailash.workflow import Workflow  # noqa: I001 - the sample's import order
    from kailash.nodes.logic.operations import SwitchNode, MergeNode
    from kailash.runtime import LocalRuntime

    workflow = Workflow()

    # Switch node for routing
    switch = SwitchNode(
        config={
            "condition": "status",
            "outputs": {
                "completed": "status == 'completed'",
                "pending": "status == 'pending'",
                "failed": "status == 'failed'"
            }
        }
    )

    # Different processing paths
    completed_processor = PythonCodeNode(
        config={"code": "result = 'Archived: ' + str(data)"}
    )
    pending_processor = PythonCodeNode(
        config={"code": "result = 'Queue for retry: ' + str(data)"}
    )
    failed_processor = PythonCodeNode(
        config={"code": "result = 'Send to error queue: ' + str(data)"}
    )

    # Merge results
    merger = MergeNode(config={"merge_strategy": "concat"})

    # Build workflow
    workflow.add_node("router", switch)
    workflow.add_node("process_completed", completed_processor)
    workflow.add_node("process_pending", pending_processor)
    workflow.add_node("process_failed", failed_processor)
    workflow.add_node("merger", merger)

    # Connect conditional paths
    workflow.connect("router", "process_completed", "completed")
    workflow.connect("router", "process_pending", "pending")
    workflow.connect("router", "process_failed", "failed")
    workflow.connect("process_completed", "merger")
    workflow.connect("process_pending", "merger")
    workflow.connect("process_failed", "merger")
    # --- end of sample ---------------------------------------------------------------------------
    return workflow, LocalRuntime


@pytest.mark.parametrize(
    ("status", "taken", "text"),
    [
        ("completed", "process_completed", "Archived: "),
        ("pending", "process_pending", "Queue for retry: "),
        ("failed", "process_failed", "Send to error queue: "),
    ],
)
def test_a_record_takes_exactly_one_path(status, taken, text):
    workflow, LocalRuntime = build()
    order = {"id": 7, "status": status}
    results, run_id = LocalRuntime().execute(workflow, parameters={"router": {"data": order}})
    assert results[taken] == {"result": text + str(order)}
    assert results["merger"] == {"merged_data": [text + str(order)]}
    others = {"process_completed", "process_pending", "process_failed"} - {taken}
    assert set(results.skipped) == others
    record = LocalRuntime().get_run(run_id)
    assert {n.node_id: n.status for n in record.nodes}[next(iter(others))] == "skipped"


def test_a_list_is_partitioned_and_every_path_runs_once():
    workflow, LocalRuntime = build()
    orders = [
        {"id": 1, "status": "completed"},
        {"id": 2, "status": "failed"},
        {"id": 3, "status": "completed"},
        {"id": 4, "status": "pending"},
    ]
    results, _ = LocalRuntime().execute(workflow, parameters={"router": {"data": orders}})
    assert results["merger"]["merged_data"] == [
        "Archived: " + str([orders[0], orders[2]]),
        "Queue for retry: " + str([orders[3]]),
        "Send to error queue: " + str([orders[1]]),
    ]
    assert results.skipped == ()


def test_an_unknown_status_is_reported_on_the_default_port_and_nothing_downstream_runs():
    workflow, LocalRuntime = build()
    results, _ = LocalRuntime().execute(workflow, parameters={"router": {"data": {"id": 9, "status": "lost"}}})
    assert results["router"] == {"default": {"id": 9, "status": "lost"}}
    assert set(results.skipped) == {"process_completed", "process_pending", "process_failed", "merger"}
