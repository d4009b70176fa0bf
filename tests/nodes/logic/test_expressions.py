"""Safe expressions for routing conditions: what is allowed, what is refused, and escapes."""

from __future__ import annotations

import pytest

from kailash.errors import NodeConfigurationError
from kailash.nodes.logic.expressions import SAFE_BUILTINS, compile_expression


@pytest.mark.parametrize(
    ("expr", "namespace", "expected"),
    [
        ("status == 'done'", {"status": "done"}, True),
        ("amount > 100 and not flagged", {"amount": 150, "flagged": False}, True),
        ("len(items) if items else -1", {"items": [1, 2]}, 2),
        ("sum(x * 2 for x in values)", {"values": [1, 2, 3]}, 12),
        ("[k for k, v in sorted(d.items()) if v]", {"d": {"b": 1, "a": 0, "c": 2}}, ["b", "c"]),
        ("record['tier'] in ('gold', 'silver')", {"record": {"tier": "gold"}}, True),
        ("name.upper().startswith('A')", {"name": "ada"}, True),
        ("f'{n:03d}'", {"n": 7}, "007"),
        ("max(a, b) - min(a, b)", {"a": 3, "b": 10}, 7),
        ("round(abs(x), 1)", {"x": -2.26}, 2.3),
        ("x is None or x % 2 == 0", {"x": 4}, True),
        ("{**{'a': 1}}", {}, {"a": 1}),
        ("data[1:]", {"data": [1, 2, 3]}, [2, 3]),
    ],
)
def test_allowed_expressions_evaluate(expr, namespace, expected):
    assert compile_expression(expr)(namespace) == expected


def test_only_whitelisted_builtins_are_visible():
    assert set(SAFE_BUILTINS) == {"abs", "all", "any", "bool", "dict", "float", "int", "len", "list", "max", "min",
                                  "round", "set", "sorted", "str", "sum", "tuple", "True", "False", "None"}
    with pytest.raises(NameError, match="name 'open' is not defined"):
        compile_expression("open('/etc/passwd')")({})
    with pytest.raises(NameError, match="name 'getattr' is not defined"):
        compile_expression("getattr(x, 'y')")({"x": 1})


@pytest.mark.parametrize(
    ("expr", "reason"),
    [
        ("__import__('os').system('id')", r"private name '__import__'"),
        ("().__class__.__bases__[0].__subclasses__()", r"attribute '__subclasses__'"),
        ("x.__dict__", r"attribute '__dict__'"),
        ("x._private", r"attribute '_private'"),
        ("'{0.__class__}'.format(x)", r"attribute 'format'"),
        ("'{x}'.format_map(d)", r"attribute 'format_map'"),
        ("int.mro()", r"attribute 'mro'"),
        ("lambda: 1", r"uses Lambda, which is not allowed"),
        ("(y := 1)", r"uses NamedExpr, which is not allowed"),
        ("(x for x in []).gi_frame", r"attribute 'gi_frame'"),
        ("f.f_globals", r"attribute 'f_globals'"),
        ("c.co_code", r"attribute 'co_code'"),
        ("t.tb_frame", r"attribute 'tb_frame'"),
    ],
)
def test_unsafe_expressions_are_refused_at_compile_time(expr, reason):
    with pytest.raises(NodeConfigurationError, match=reason) as info:
        compile_expression(expr, node_id="router", parameter="outputs.x")
    assert info.value.node_id == "router"
    assert info.value.parameter == "outputs.x"
    assert str(info.value).startswith("node 'router': expression")


def test_generator_frame_escape_to_real_builtins_is_refused():
    # Reaches the evaluating frame's module globals (real builtins) through a running generator.
    escape = ("[x for l in [[]] for g in [(a.gi_frame.f_back.f_back.f_back.f_globals['__builtins__']"
              "['__import__']('os').getpid() for a in l)] if l.append(g) is None for x in g]")
    with pytest.raises(NodeConfigurationError, match="not allowed|uses the attribute"):
        compile_expression(escape)


def test_syntax_errors_and_non_strings():
    with pytest.raises(NodeConfigurationError, match=r"invalid expression 'a ==': invalid syntax"):
        compile_expression("a ==")
    with pytest.raises(NodeConfigurationError, match=r"expression must be a string, got int"):
        compile_expression(42)
    with pytest.raises(NodeConfigurationError, match="invalid expression"):
        compile_expression("import os")


def test_statements_are_not_expressions():
    with pytest.raises(NodeConfigurationError, match="invalid expression 'x = 1'"):
        compile_expression("x = 1")
