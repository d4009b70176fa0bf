"""SwitchNode routing and partitioning, MergeNode strategies, skipped branches in a workflow."""

from __future__ import annotations

import logging

import pytest

from kailash.errors import NodeConfigurationError, NodeExecutionError, WorkflowValidationError
from kailash.nodes.code.python import PythonCodeNode
from kailash.nodes.logic.async_operations import AsyncMergeNode
from kailash.nodes.logic.operations import MergeNode, SwitchNode
from kailash.runtime import LocalRuntime
from kailash.workflow import Workflow

ORDERS = [
    {"id": 1, "status": "completed", "amount": 50},
    {"id": 2, "status": "pending", "amount": 500},
    {"id": 3, "status": "failed", "amount": 5},
    {"id": 4, "status": "completed", "amount": 150},
    {"id": 5, "status": "unknown", "amount": 1},
]


def status_switch(**extra):
    return SwitchNode(condition="status", outputs={
        "completed": "status == 'completed'",
        "pending": "status == 'pending'",
        "failed": "status == 'failed'",
    }, **extra)


# -- SwitchNode on its own -------------------------------------------------------------------
def test_dict_record_goes_to_the_first_matching_port():
    assert status_switch().execute(data=ORDERS[1]) == {"pending": ORDERS[1]}


def test_list_is_partitioned_record_by_record_keeping_order():
    out = status_switch().execute(data=ORDERS)
    assert out == {
        "completed": [ORDERS[0], ORDERS[3]],
        "pending": [ORDERS[1]],
        "failed": [ORDERS[2]],
        "default": [ORDERS[4]],
    }


def test_first_match_wins_when_several_expressions_hold():
    switch = SwitchNode(condition="amount", outputs={"big": "amount > 100", "any": "amount > 0"})
    assert switch.execute(data=ORDERS[1]) == {"big": ORDERS[1]}
    assert switch.execute(data=ORDERS[0]) == {"any": ORDERS[0]}


def test_value_list_form_compares_the_condition_field():
    switch = SwitchNode(condition="status", outputs=["completed", "failed"])
    out = switch.execute(data=ORDERS)
    assert [r["id"] for r in out["completed"]] == [1, 4]
    assert [r["id"] for r in out["failed"]] == [3]
    assert [r["id"] for r in out["default"]] == [2, 5]


def test_value_list_form_matches_numbers_given_as_text():
    switch = SwitchNode(condition="tier", outputs=["1", "2"])
    assert switch.execute(data={"tier": 2}) == {"2": {"tier": 2}}


def test_boolean_condition_without_outputs_gives_true_and_false_ports():
    switch = SwitchNode(condition="amount > 100")
    assert switch.execute(data=ORDERS[1]) == {"true": ORDERS[1]}
    out = switch.execute(data=ORDERS)
    assert [r["id"] for r in out["true"]] == [2, 4]
    assert [r["id"] for r in out["false"]] == [1, 3, 5]


def test_expressions_see_value_and_record():
    switch = SwitchNode(condition="status", outputs={
        "done": "value == 'completed' and record['amount'] >= 100",
        "rest": "True",
    })
    out = switch.execute(data=ORDERS)
    assert [r["id"] for r in out["done"]] == [4]
    assert len(out["rest"]) == 4


def test_a_record_missing_the_field_matches_nothing():
    out = status_switch().execute(data=[{"id": 9}])
    assert out == {"default": [{"id": 9}]}


def test_unmatched_records_are_reported(caplog):
    with caplog.at_level(logging.INFO, logger="kailash.nodes.logic.operations"):
        status_switch(name="router").execute(data=ORDERS)
    assert "node 'router': 1 record(s) matched no branch; sent to port 'default'" in caplog.text


def test_non_dict_records_are_routed_by_value():
    switch = SwitchNode(condition="value > 2")
    assert switch.execute(data=[1, 3, 5]) == {"false": [1], "true": [3, 5]}


def test_declared_outputs_include_default():
    assert list(status_switch().get_outputs()) == ["completed", "pending", "failed", "default"]
    assert list(SwitchNode(condition="x > 1").get_outputs()) == ["true", "false", "default"]


def test_unsafe_expression_is_refused_before_running():
    wf = Workflow("w")
    wf.add_node("router", SwitchNode(condition="status", outputs={"x": "__import__('os').system('echo hi')"}))
    with pytest.raises(WorkflowValidationError, match=r"node 'router' \(SwitchNode\): .*private name '__import__'"):
        wf.validate()


def test_invalid_expression_syntax_is_reported():
    with pytest.raises(NodeConfigurationError, match=r"invalid expression 'status ==': invalid syntax"):
        SwitchNode(condition="status", outputs={"x": "status =="}).execute(data={})


def test_condition_is_required():
    with pytest.raises(NodeConfigurationError, match=r"parameter 'condition' is required"):
        SwitchNode().execute(data={})


# -- MergeNode --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("strategy", "values", "expected"),
    [
        ("concat", [[1, 2], [3], 4], [1, 2, 3, 4]),
        ("dict_merge", [{"a": 1, "b": 1}, {"b": 1, "c": 2}], {"a": 1, "b": 1, "c": 2}),
        ("merge_dict", [{"a": 1}, {"c": 3}], {"a": 1, "c": 3}),
        ("zip", [[1, 2, 3], ["a", "b"]], [[1, "a"], [2, "b"]]),
        ("list", [[1], [2]], [[1], [2]]),
        ("first", ["x", "y"], "x"),
    ],
)
def test_merge_strategies(strategy, values, expected):
    assert MergeNode(merge_strategy=strategy).execute(data=values) == {"merged_data": expected}


def test_merge_join_on_key():
    left = [{"id": 1, "a": "x"}, {"id": 2, "a": "y"}]
    right = [{"id": 2, "b": "z"}, {"id": 3, "b": "w"}]
    out = MergeNode(merge_strategy="join", key="id").execute(data=[left, right])["merged_data"]
    assert out == [{"id": 1, "a": "x"}, {"id": 2, "a": "y", "b": "z"}, {"id": 3, "b": "w"}]


def test_merge_join_needs_a_key():
    with pytest.raises(NodeConfigurationError, match=r"merge_strategy 'join' needs a 'key'"):
        MergeNode(merge_strategy="join").execute(data=[[]])


def test_merge_explicit_inputs_and_none_skipping():
    node = MergeNode(merge_strategy="concat")
    assert node.execute(data1=[1], data2=None, data3=[2]) == {"merged_data": [1, 2]}
    assert node.execute(data=[[1], None]) == {"merged_data": [1]}
    assert MergeNode(skip_none=False, merge_strategy="list").execute(data=[None, 1]) == {"merged_data": [None, 1]}


def test_unknown_merge_strategy_lists_the_known_ones():
    with pytest.raises(NodeConfigurationError, match=r"(?s)node 'm' \(MergeNode\).*'merge_strategy' expects one of 'concat', 'dict_merge'.*got 'bogus'"):
        MergeNode(name="m", merge_strategy="bogus").execute(data=[[1]])


def test_dict_merge_of_a_non_dict_names_the_input():
    with pytest.raises(NodeExecutionError, match=r"node 'm' \(MergeNode\): dict_merge needs dicts, input 2 is a list"):
        MergeNode(name="m", merge_strategy="dict_merge").execute(data=[{"a": 1}, [1]])


def test_dict_merge_reports_a_clash_naming_the_key_and_inputs():
    with pytest.raises(NodeExecutionError, match=r"node 'm' \(MergeNode\): dict_merge: inputs 1 and 3 both set "
                                                 r"key 'status' to different values.*on_conflict='last'") as info:
        MergeNode(name="m", merge_strategy="dict_merge").execute(
            data=[{"status": 200, "a": 1}, {"b": 2}, {"status": 404}])
    assert info.value.parameter == "on_conflict" and info.value.got == "'status'"


@pytest.mark.parametrize(("on_conflict", "expected"), [("last", {"k": 2, "a": 1}), ("first", {"k": 1, "a": 1})])
def test_dict_merge_keeps_one_value_when_asked(on_conflict, expected):
    node = MergeNode(merge_strategy="dict_merge", on_conflict=on_conflict)
    assert node.execute(data=[{"k": 1, "a": 1}, {"k": 2}]) == {"merged_data": expected}


def test_async_merge_clash_in_a_parallel_workflow_is_reported():
    import asyncio

    from kailash.runtime import ParallelRuntime

    wf = Workflow("clash")
    wf.add_node("a", PythonCodeNode(code="result = {'data': 1}"))
    wf.add_node("b", PythonCodeNode(code="result = {'data': 2}"))
    wf.add_node("m", AsyncMergeNode(merge_strategy="dict_merge"))
    wf.connect("a", "m")
    wf.connect("b", "m")
    with pytest.raises(NodeExecutionError, match=r"key 'data' to different values") as info:
        asyncio.run(ParallelRuntime().execute(wf))
    assert info.value.node_id == "m"
    wf.nodes["m"].config["on_conflict"] = "last"
    results, _ = asyncio.run(ParallelRuntime().execute(wf))
    assert results["m"]["merged_data"] == {"data": 2}


def test_async_merge_node_runs_in_a_local_workflow():
    wf = Workflow("async-merge")
    wf.add_node("a", PythonCodeNode(code="result = {'a': 1}"))
    wf.add_node("b", PythonCodeNode(code="result = {'b': 2}"))
    wf.add_node("m", AsyncMergeNode(merge_strategy="dict_merge", wait_for_all=True))
    wf.connect("a", "m")
    wf.connect("b", "m")
    assert LocalRuntime(store=None).execute(wf)[0]["m"] == {"merged_data": {"a": 1, "b": 2}}


# -- in a workflow ----------------------------------------------------------------------------
def routed_workflow(with_default: bool = False) -> Workflow:
    wf = Workflow("routing")
    wf.add_node("router", status_switch())
    for port in ("completed", "pending", "failed") + (("default",) if with_default else ()):
        wf.add_node(f"on_{port}", PythonCodeNode(code=f"result = ['{port}:' + str(r['id']) for r in data]"))
        wf.connect("router", f"on_{port}", port)
        wf.add_node(f"after_{port}", PythonCodeNode(code="result = len(data)"))
        wf.connect(f"on_{port}", f"after_{port}")
    wf.add_node("merge", MergeNode(merge_strategy="concat"))
    for port in ("completed", "pending", "failed") + (("default",) if with_default else ()):
        wf.connect(f"on_{port}", "merge")
    return wf


def test_untaken_branches_and_everything_after_them_are_skipped():
    results, run_id = LocalRuntime().execute(routed_workflow(), parameters={"router": {"data": [ORDERS[0], ORDERS[3]]}})
    assert results["merge"] == {"merged_data": ["completed:1", "completed:4"]}
    assert set(results.skipped) == {"on_pending", "after_pending", "on_failed", "after_failed"}
    assert "on_pending" not in results
    record = LocalRuntime().get_run(run_id)
    assert record.status == "completed"
    assert {n.node_id for n in record.nodes if n.status == "skipped"} == set(results.skipped)


def test_merge_receives_only_what_arrived_in_connection_order():
    results, _ = LocalRuntime(store=None).execute(routed_workflow(with_default=True),
                                                  parameters={"router": {"data": ORDERS}})
    assert results["merge"]["merged_data"] == ["completed:1", "completed:4", "pending:2", "failed:3", "default:5"]
    assert results["after_default"] == {"result": 1}
    assert results.skipped == ()


def test_merge_with_nothing_arriving_is_skipped():
    wf = Workflow("none")
    wf.add_node("router", SwitchNode(condition="x", outputs=["a"]))
    wf.add_node("on_a", PythonCodeNode(code="result = data"))
    wf.add_node("merge", MergeNode())
    wf.connect("router", "on_a", "a")
    wf.connect("on_a", "merge")
    results, _ = LocalRuntime(store=None).execute(wf, parameters={"router": {"data": {"x": "b"}}})
    assert results["router"] == {"default": {"x": "b"}}
    assert set(results.skipped) == {"on_a", "merge"}


def test_switch_port_through_an_explicit_mapping_is_conditional_too():
    wf = Workflow("mapped")
    wf.add_node("router", SwitchNode(condition="n > 0"))
    wf.add_node("pos", PythonCodeNode(code="result = value['n']"))
    wf.connect("router", "pos", mapping={"true": "value"})
    results, _ = LocalRuntime(store=None).execute(wf, parameters={"router": {"data": {"n": -1}}})
    assert results.skipped == ("pos",)
    results, _ = LocalRuntime(store=None).execute(wf, parameters={"router": {"data": {"n": 3}}})
    assert results["pos"] == {"result": 3}
