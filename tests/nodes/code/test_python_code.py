"""PythonCodeNode (in-process): inputs as locals, result/return, self state, imports, errors."""

from __future__ import annotations

import pytest

from kailash.errors import NodeConfigurationError, NodeExecutionError, WorkflowValidationError
from kailash.nodes.code.python import PythonCodeNode
from kailash.runtime import LocalRuntime
from kailash.workflow import Workflow


def test_inputs_are_variables_and_result_is_the_output():
    node = PythonCodeNode(code="result = a + b")
    assert node.execute(a=2, b=3) == {"result": 5}


def test_config_form_and_keyword_form_are_equivalent():
    a = PythonCodeNode(config={"code": "result = x * 2", "imports": []})
    b = PythonCodeNode(code="result = x * 2", imports=[])
    assert a.execute(x=4) == b.execute(x=4) == {"result": 8}


def test_extra_config_values_are_inputs_and_runtime_inputs_win():
    node = PythonCodeNode(code="result = x + y", x=1, y=10)
    assert node.execute() == {"result": 11}
    assert node.execute(y=100) == {"result": 101}


def test_top_level_return_sets_the_result():
    node = PythonCodeNode(code="if data > 0:\n    return 'positive'\nresult = 'other'")
    assert node.execute(data=5) == {"result": "positive"}
    assert node.execute(data=-1) == {"result": "other"}


def test_return_result_inside_a_branch_as_in_the_circuit_breaker_sample():
    code = "result = {'early': True}\nif flag:\n    return result\nresult = {'early': False}"
    node = PythonCodeNode(code=code)
    assert node.execute(flag=True) == {"result": {"early": True}}
    assert node.execute(flag=False) == {"result": {"early": False}}


def test_code_not_setting_result_is_an_error_naming_the_node():
    with pytest.raises(NodeExecutionError, match=r"node 'quiet' \(PythonCodeNode\): the code did not set `result`"):
        PythonCodeNode(name="quiet", code="x = 1").execute()


def test_result_may_be_none():
    assert PythonCodeNode(code="result = None").execute() == {"result": None}


def test_self_state_persists_between_executions_of_the_same_node():
    code = "if not hasattr(self, 'n'):\n    self.n = 0\nself.n += 1\nresult = self.n"
    node = PythonCodeNode(code=code)
    assert [node.execute()["result"] for _ in range(3)] == [1, 2, 3]
    other = PythonCodeNode(code=code)
    assert other.execute()["result"] == 1  # state is per node


def test_self_state_persists_across_workflow_runs():
    wf = Workflow("counter")
    wf.add_node("count", PythonCodeNode(code="self.n = getattr(self, 'n', 0) + 1\nresult = self.n"))
    rt = LocalRuntime(store=None)
    assert [rt.execute(wf)[0]["count"]["result"] for _ in range(3)] == [1, 2, 3]


def test_code_is_compiled_once_per_set_of_input_names():
    node = PythonCodeNode(code="result = a * 2")
    for i in range(5):
        assert node.execute(a=i)["result"] == 2 * i
    assert len(node._compiled) == 1
    with pytest.raises(NodeExecutionError):
        node.execute(b=1)  # `a` is not defined with this set of inputs
    assert len(node._compiled) == 2


def test_indented_code_is_dedented():
    node = PythonCodeNode(code="""
    # user-provided code, indented inside a triple-quoted string
    result = sum(range(input_value))
    """)
    assert node.execute(input_value=5) == {"result": 10}


def test_imports_are_available_to_the_code():
    node = PythonCodeNode(code="result = (math.floor(x), json.dumps([x]), p.basename('/a/b'))",
                          imports=["math", "json", "os.path as p"])
    assert node.execute(x=2.7) == {"result": (2, "[2.7]", "b")}
    dotted = PythonCodeNode(code="result = os.path.join('a', 'b')", imports=["os.path"])
    assert dotted.execute() == {"result": "a/b"}


def test_import_inside_the_code_works_too():
    assert PythonCodeNode(code="import statistics\nresult = statistics.mean(data)").execute(data=[1, 2, 3]) == {
        "result": 2
    }


def test_unknown_import_is_a_configuration_error():
    with pytest.raises(NodeConfigurationError, match=r"node 'imp' \(PythonCodeNode\): cannot import 'no_such_module_xyz' listed in imports") as info:
        PythonCodeNode(name="imp", code="result = 1", imports=["no_such_module_xyz"]).execute()
    assert info.value.parameter == "imports"


def test_user_error_names_the_node_and_the_line():
    code = "total = 0\nfor x in data:\n    total += 10 / x\nresult = total"
    with pytest.raises(NodeExecutionError, match=r"node 'div' \(PythonCodeNode\) failed at line 3 of its code: "
                       r"ZeroDivisionError: division by zero\n    3 \| total \+= 10 / x") as info:
        PythonCodeNode(name="div", code=code).execute(data=[1, 0])
    assert info.value.line == 3
    assert info.value.node_id == "div"
    assert isinstance(info.value.__cause__, ZeroDivisionError)


def test_error_in_a_function_defined_by_the_code_points_at_the_user_line():
    code = "def helper(v):\n    return v['missing']\n\nresult = helper(data)"
    with pytest.raises(NodeExecutionError, match=r"failed at line 2 of its code: KeyError: 'missing'"):
        PythonCodeNode(name="h", code=code).execute(data={})


def test_undefined_name_is_reported_with_its_line():
    with pytest.raises(NodeExecutionError, match=r"line 2 of its code: NameError: name 'nope' is not defined"):
        PythonCodeNode(name="n", code="a = 1\nresult = nope + a").execute()


def test_sys_exit_in_user_code_fails_the_node_not_the_process():
    wf = Workflow("exit")
    wf.add_node("quit", PythonCodeNode(code="import sys\nsys.exit(3)"))
    runtime = LocalRuntime()
    with pytest.raises(NodeExecutionError, match=r"node 'quit' \(PythonCodeNode\) failed at line 2 of its code: SystemExit: 3") as info:
        runtime.execute(wf)
    assert runtime.get_run(info.value.run_id).status == "failed"

    def leave():
        raise SystemExit("bye")

    with pytest.raises(NodeExecutionError, match="SystemExit: bye"):
        PythonCodeNode.from_function(leave).execute()


def test_syntax_error_names_node_and_line():
    with pytest.raises(NodeConfigurationError, match=r"node 'syn' \(PythonCodeNode\): syntax error in code at line 2"):
        PythonCodeNode(name="syn", code="a = 1\nresult = = a").execute()


def test_syntax_error_is_reported_by_workflow_validation():
    wf = Workflow("w")
    wf.add_node("syn", PythonCodeNode(code="result = (1"))
    with pytest.raises(WorkflowValidationError, match=r"node 'syn' \(PythonCodeNode\): syntax error in code at line 1"):
        wf.validate()


def test_missing_code_is_reported_by_validation():
    wf = Workflow("w")
    wf.add_node("empty", PythonCodeNode())
    with pytest.raises(WorkflowValidationError, match=r"node 'empty' \(PythonCodeNode\): parameter 'code' is required"):
        wf.validate()


def test_code_of_the_wrong_type_is_reported():
    wf = Workflow("w")
    wf.add_node("bad", PythonCodeNode(code=42))
    with pytest.raises(WorkflowValidationError, match=r"node 'bad' \(PythonCodeNode\): parameter 'code' expects str, got int"):
        wf.validate()


def test_input_names_that_are_not_identifiers_are_ignored_by_the_code():
    node = PythonCodeNode(code="result = ok")
    assert node.execute(**{"ok": 1, "not-an-identifier": 2, "class": 3}) == {"result": 1}


def test_from_function():
    def total(data, start=0):
        return start + sum(data)

    node = PythonCodeNode.from_function(total)
    assert node.name == "total"
    assert node.execute(data=[1, 2, 3]) == {"result": 6}
    assert node.execute(data=[1], start=10, unrelated=5) == {"result": 11}


def test_from_function_with_kwargs_gets_every_input():
    def collect(**kw):
        return sorted(kw)

    assert PythonCodeNode.from_function(collect).execute(b=1, a=2) == {"result": ["a", "b"]}


def test_from_function_errors_name_the_node():
    def broken(data):
        return data["x"]

    with pytest.raises(NodeExecutionError, match=r"node 'broken' \(PythonCodeNode from broken\) failed: KeyError: 'x'"):
        PythonCodeNode.from_function(broken).execute(data={})


def test_from_function_rejects_non_callables():
    with pytest.raises(NodeConfigurationError, match="from_function expects a callable"):
        PythonCodeNode.from_function(42)


def _module_level_square(data):
    return [v * v for v in data]


def test_from_function_survives_save_and_load(tmp_path):
    wf = Workflow("fn")
    wf.add_node("sq", PythonCodeNode.from_function(_module_level_square))
    wf.save(tmp_path / "fn.yaml")
    loaded = Workflow.load(tmp_path / "fn.yaml")
    assert "def _module_level_square" in loaded.nodes["sq"].config["code"]
    params = {"sq": {"data": [1, 2, 3]}}
    rt = LocalRuntime(store=None)
    assert rt.execute(loaded, parameters=params)[0]["sq"] == rt.execute(wf, parameters=params)[0]["sq"] == {
        "result": [1, 4, 9]
    }


def test_inputs_can_carry_callables_from_the_runtime():
    wf = Workflow("fn-input")
    wf.add_node("apply", PythonCodeNode(code="result = [fn(v) for v in data]"))
    results, _ = LocalRuntime(store=None).execute(wf, parameters={"apply": {"fn": str.upper, "data": ["a", "b"]}})
    assert results["apply"]["result"] == ["A", "B"]


def test_comprehensions_and_nested_functions_see_the_inputs():
    code = "def f(v):\n    return v * factor\nresult = [f(v) for v in data if v > threshold]"
    assert PythonCodeNode(code=code).execute(data=[1, 5, 9], factor=2, threshold=2) == {"result": [10, 18]}
