"""Seed pattern 4 (Multi-Level Routing): the sample's nodes and connections, with the
surrounding workflow (node ids, processors) built as a user would."""

from __future__ import annotations

from kailash.nodes.code.python import PythonCodeNode
from kailash.nodes.logic.operations import MergeNode, SwitchNode
from kailash.runtime import LocalRuntime
from kailash.workflow import Workflow

CUSTOMERS = [
    {"id": 1, "status": "active", "tier": "gold"},
    {"id": 2, "status": "inactive", "tier": "gold"},
    {"id": 3, "status": "active", "tier": "silver"},
    {"id": 4, "status": "active", "tier": "bronze"},
    {"id": 5, "status": "active", "tier": "gold"},
    {"id": 6, "status": "inactive", "tier": "bronze"},
]


def build() -> Workflow:
    workflow = Workflow("multi_level")

    # --- the sample, as written ------------------------------------------------------------------
    # First level: Status routing
    status_switch = SwitchNode(
        config={
            "condition": "status",
            "outputs": ["active", "inactive"]
        }
    )

    # Second level: Tier routing for active customers
    tier_switch = SwitchNode(
        config={
            "condition": "tier",
            "outputs": ["gold", "silver", "bronze"]
        }
    )
    # --- (the sample leaves adding the nodes to the reader) --------------------------------------
    workflow.add_node("status_router", status_switch)
    workflow.add_node("tier_router", tier_switch)
    workflow.add_node("gold_processor", PythonCodeNode(code="result = [{'id': c['id'], 'discount': 0.2} for c in data]"))
    workflow.add_node("silver_processor", PythonCodeNode(code="result = [{'id': c['id'], 'discount': 0.1} for c in data]"))
    workflow.add_node("bronze_processor", PythonCodeNode(code="result = [{'id': c['id'], 'discount': 0.0} for c in data]"))

    # Connect nested routing
    workflow.connect("status_router", "tier_router", "active")
    workflow.connect("tier_router", "gold_processor", "gold")
    workflow.connect("tier_router", "silver_processor", "silver")
    workflow.connect("tier_router", "bronze_processor", "bronze")
    # --- end of sample ---------------------------------------------------------------------------
    return workflow


def test_records_are_routed_through_both_levels():
    results, _ = LocalRuntime().execute(build(), parameters={"status_router": {"data": CUSTOMERS}})
    assert [c["id"] for c in results["status_router"]["inactive"]] == [2, 6]
    assert [c["id"] for c in results["tier_router"]["gold"]] == [1, 5]
    assert results["gold_processor"] == {"result": [{"id": 1, "discount": 0.2}, {"id": 5, "discount": 0.2}]}
    assert results["silver_processor"] == {"result": [{"id": 3, "discount": 0.1}]}
    assert results["bronze_processor"] == {"result": [{"id": 4, "discount": 0.0}]}
    assert results.skipped == ()


def test_an_inactive_customer_skips_the_whole_second_level():
    results, run_id = LocalRuntime().execute(build(), parameters={"status_router": {"data": CUSTOMERS[1]}})
    assert results["status_router"] == {"inactive": CUSTOMERS[1]}
    assert set(results.skipped) == {"tier_router", "gold_processor", "silver_processor", "bronze_processor"}
    assert LocalRuntime().get_run(run_id).status == "completed"


def test_only_the_matching_second_level_branch_runs_for_one_active_customer():
    results, _ = LocalRuntime().execute(build(), parameters={"status_router": {"data": [CUSTOMERS[2]]}})
    assert results["silver_processor"] == {"result": [{"id": 3, "discount": 0.1}]}
    assert set(results.skipped) == {"gold_processor", "bronze_processor"}


def test_three_levels_and_a_merge_of_what_ran():
    workflow = build()
    region = SwitchNode(config={"condition": "region", "outputs": ["eu", "us"]})
    workflow.add_node("region_router", region)
    workflow.connect("gold_processor", "region_router")
    workflow.add_node("eu", PythonCodeNode(code="result = ['eu-' + str(c['id']) for c in data]"))
    workflow.add_node("us", PythonCodeNode(code="result = ['us-' + str(c['id']) for c in data]"))
    workflow.connect("region_router", "eu", "eu")
    workflow.connect("region_router", "us", "us")
    workflow.add_node("all", MergeNode(merge_strategy="concat"))
    workflow.connect("eu", "all")
    workflow.connect("us", "all")
    workflow.nodes["gold_processor"].config["code"] = (
        "result = [{'id': c['id'], 'region': 'eu' if c['id'] % 2 else 'us'} for c in data]")
    workflow._touch()
    customers = CUSTOMERS + [{"id": 8, "status": "active", "tier": "gold"}]
    results, _ = LocalRuntime().execute(workflow, parameters={"status_router": {"data": customers}})
    assert results["all"] == {"merged_data": ["eu-1", "eu-5", "us-8"]}
