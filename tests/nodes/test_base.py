"""The node contract: NodeParameter, construction forms, input resolution, direct execution."""

from __future__ import annotations

from typing import Any, Optional, Union

import pytest

from kailash.errors import KailashError, NodeConfigurationError, NodeExecutionError
from kailash.nodes.base import Node, NodeParameter, check_type, type_name


class ScaleNode(Node):
    """Multiplies a number (a node with a required input, a default and a typed option)."""

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {
            "data": NodeParameter(type=float, required=True, description="the number"),
            "factor": NodeParameter(type=int, default=2, description="multiplier"),
            "label": NodeParameter(type=str, required=False, description="tag"),
        }

    def run(self, data: float, factor: int, label: str | None) -> dict[str, Any]:
        return {"result": data * factor, "label": label}


class BadOutputNode(Node):
    def run(self, **inputs: Any) -> Any:
        return [1, 2]


class CrashNode(Node):
    def get_parameters(self) -> dict[str, NodeParameter]:
        return {"x": NodeParameter(type=int, default=0)}

    def run(self, x: int) -> dict[str, Any]:
        raise KeyError("missing-key")


def test_three_construction_forms_are_equivalent():
    a = ScaleNode(config={"factor": 3})
    b = ScaleNode(factor=3)
    c = ScaleNode(name="scale", factor=3)
    assert a.config == b.config == c.config == {"factor": 3}
    assert a.name is None and b.name is None and c.name == "scale"
    assert a.execute(data=2) == b.execute(data=2) == c.execute(data=2) == {"result": 6, "label": None}


def test_config_and_kwargs_merge_kwargs_win():
    node = ScaleNode(config={"factor": 3, "label": "cfg"}, label="kw")
    assert node.config == {"factor": 3, "label": "kw"}


def test_name_inside_config_becomes_the_node_id():
    node = ScaleNode(config={"name": "from-config", "factor": 4})
    assert node.name == "from-config"
    assert "name" not in node.config


def test_a_declared_name_parameter_keeps_its_config_value():
    class PersonNode(Node):
        def get_parameters(self):
            return {"name": NodeParameter(type=str, required=True, description="who")}

        def run(self, name):
            return {"result": f"hi {name}"}

    assert PersonNode(config={"name": "Ada"}).execute() == {"result": "hi Ada"}
    from kailash.runtime import LocalRuntime
    from kailash.workflow import Workflow

    wf = Workflow("people")
    wf.add_node("greet", PersonNode(config={"name": "Grace"}))
    assert LocalRuntime(store=None).execute(wf)[0]["greet"] == {"result": "hi Grace"}


def test_config_must_be_a_dict():
    with pytest.raises(NodeConfigurationError, match=r"ScaleNode: 'config' must be a dict .* got list"):
        ScaleNode(config=["factor", 3])


def test_parameters_get_their_names_filled_in_and_are_cached():
    node = ScaleNode()
    params = node.parameters
    assert [p.name for p in params.values()] == ["data", "factor", "label"]
    assert node.parameters is params


def test_get_parameters_must_return_node_parameters():
    class Broken(Node):
        def get_parameters(self):
            return {"x": int}

        def run(self, **kw):
            return {}

    with pytest.raises(NodeConfigurationError, match=r"Broken.get_parameters\(\) must map names to NodeParameter, got type for 'x'"):
        _ = Broken().parameters


def test_execute_precedence_defaults_then_config_then_inputs():
    node = ScaleNode(factor=5)
    assert node.execute(data=1)["result"] == 5
    assert node.execute(data=1, factor=7)["result"] == 7
    assert ScaleNode().execute(data=1)["result"] == 2


def test_execute_rejects_unknown_parameter_with_close_match():
    with pytest.raises(NodeConfigurationError, match=r"unknown parameter 'factr' .*did you mean 'factor'") as info:
        ScaleNode(name="s").execute(data=1, factr=3)
    assert info.value.node_id == "s"
    assert info.value.parameter == "factr"


def test_execute_reports_missing_required_parameter():
    with pytest.raises(NodeConfigurationError, match=r"node 's' \(ScaleNode\) has invalid inputs:\n  - parameter 'data' is required \(float: the number\)"):
        ScaleNode(name="s").execute()


def test_execute_reports_wrong_type_and_gathers_every_problem():
    with pytest.raises(NodeConfigurationError) as info:
        ScaleNode(name="s").execute(data="seven", factor=1.5, bogus=1)
    msg = str(info.value)
    assert "parameter 'data' expects float, got str" in msg
    assert "parameter 'factor' expects int, got float" in msg
    assert "unknown parameter 'bogus'" in msg


def test_int_accepted_where_float_declared_but_bool_is_not_an_int():
    assert ScaleNode().execute(data=3)["result"] == 6
    with pytest.raises(NodeConfigurationError, match="parameter 'factor' expects int, got bool"):
        ScaleNode().execute(data=1, factor=True)


def test_run_must_return_a_dict():
    with pytest.raises(NodeExecutionError, match=r"returned list; run\(\) must return a dict of named outputs"):
        BadOutputNode(name="b").execute()


def test_foreign_exception_is_wrapped_naming_the_node_and_chained():
    with pytest.raises(NodeExecutionError, match=r"node 'c' \(CrashNode\) failed: KeyError: 'missing-key'") as info:
        CrashNode(name="c").execute()
    assert isinstance(info.value.__cause__, KeyError)
    assert info.value.node_id == "c"
    assert isinstance(info.value, RuntimeError)  # phase error also inherits the builtin


def test_kailash_error_from_run_gets_the_node_id():
    class Picky(Node):
        def run(self, **kw):
            raise NodeConfigurationError("not today", parameter="x")

    with pytest.raises(NodeConfigurationError, match="not today") as info:
        Picky(name="picky").execute()
    assert info.value.node_id == "picky"


def test_primary_input_and_output_inference():
    assert ScaleNode().input_name() == "data"

    class OneRequired(Node):
        def get_parameters(self):
            return {"text": NodeParameter(type=str, required=True), "n": NodeParameter(type=int, default=1)}

        def run(self, **kw):
            return {"out": kw["text"] * kw["n"]}

    node = OneRequired()
    assert node.input_name() == "text"
    assert node.output_name({"out": "x"}) == "out"
    assert node.output_name({"a": 1, "result": 2}) == "result"
    assert node.output_name({"a": 1, "b": 2}) is None


def test_label_names_the_node_or_says_it_is_unnamed():
    assert ScaleNode(name="x").label == "'x'"
    assert ScaleNode().label == "<unnamed>"  # messages add the type: "node <unnamed> (ScaleNode)"
    assert repr(ScaleNode(name="x")) == "ScaleNode(name='x')"


def test_to_dict_gives_type_and_config():
    assert ScaleNode(name="s", factor=3).to_dict() == {"type": "ScaleNode", "config": {"factor": 3}}


def test_node_parameter_to_dict_hides_secret_defaults():
    p = NodeParameter(name="token", type=str, default="s3cr3t", secret=True)
    d = p.to_dict()
    assert d["default"] is None and d["secret"] is True and d["type"] == "str"
    assert NodeParameter(name="f", type=float, default=1.5).to_dict()["default"] == 1.5


@pytest.mark.parametrize(
    ("value", "tp", "ok"),
    [
        (1, int, True),
        (True, int, False),
        (1, float, True),
        ("a", (int, str), True),
        (1.5, (int, str), False),
        ([1], list[int], True),
        ({"a": 1}, dict[str, int], True),
        (None, int, True),
        ("x", Any, True),
        ("x", Optional[int], False),  # noqa: UP045 - the typing form users still write
        (3, Union[int, str], True),  # noqa: UP007 - the typing form users still write
        (3, int | None, True),
        ("3", int | None, False),
    ],
)
def test_check_type(value, tp, ok):
    assert check_type(value, tp) is ok


def test_type_name_is_readable():
    assert type_name(int) == "int"
    assert type_name(Any) == "any"
    assert type_name((dict, list)) == "dict | list"
    assert type_name(list[int]) == "list[int]"


def test_error_hierarchy_matches_builtins():
    from kailash import errors

    assert issubclass(errors.WorkflowValidationError, ValueError)
    assert issubclass(errors.NodeConfigurationError, TypeError)
    assert issubclass(errors.NodeExecutionError, RuntimeError)
    assert issubclass(errors.NodeTimeoutError, TimeoutError)
    assert issubclass(errors.SecurityError, PermissionError)
    assert issubclass(errors.SerializationError, ValueError)
    assert issubclass(errors.UnknownNodeTypeError, LookupError)
    for name in errors.__all__:
        if name != "Problem":  # the one value class: what a validation error lists
            assert issubclass(getattr(errors, name), KailashError)


def test_errors_keep_context_when_pickled():
    import pickle

    err = NodeExecutionError("boom", node_id="n", parameter="p", run_id="r1")
    back = pickle.loads(pickle.dumps(err))
    assert (back.node_id, back.parameter, back.run_id, back.message) == ("n", "p", "r1", "boom")
    assert str(back) == "boom (run r1)"


def test_async_node_runs_everywhere_a_node_does():
    import asyncio

    from kailash.nodes.base_async import AsyncNode

    class Twice(AsyncNode):
        def get_parameters(self):
            return {"x": NodeParameter(type=int, required=True)}

        async def async_run(self, x):
            await asyncio.sleep(0)
            return {"result": 2 * x}

    assert Twice().execute(x=4) == {"result": 8}
    assert asyncio.run(Twice().async_execute(x=5)) == {"result": 10}

    async def inside_a_loop():
        return Twice().execute(x=6)  # sync call while a loop runs in this thread

    assert asyncio.run(inside_a_loop()) == {"result": 12}
