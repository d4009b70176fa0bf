"""Type checkers see the real classes behind the lazy exports, and a user's node passes
``mypy --strict`` against the package as installed (no ``[override]`` on ``run``)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import kailash

PACKAGE_ROOT = Path(kailash.__file__).resolve().parent.parent
LAZY_PACKAGES = ["kailash", "kailash.runtime", "kailash.api", "kailash.nodes.api", "kailash.nodes.data"]

USER_SCRIPT = '''
from __future__ import annotations

from typing import Any, Literal

from kailash import LocalRuntime, Node, NodeParameter, Workflow, node
from kailash.nodes.api import HTTPRequestNode
from kailash.nodes.base_async import AsyncNode
from kailash.runtime import ParallelRuntime


class Double(Node):
    def get_parameters(self) -> dict[str, NodeParameter]:
        return {"x": NodeParameter(type=int, required=True, minimum=0)}

    def run(self, x: int) -> dict[str, Any]:
        return {"result": x * 2}


class Fetch(AsyncNode):
    async def async_run(self, url: str, timeout: float = 1.0) -> dict[str, Any]:
        return {"data": url}


@node
def scale(values: list[float], factor: float = 2.0, mode: Literal["mul", "div"] = "mul") -> list[float]:
    return [v * factor if mode == "mul" else v / factor for v in values]


wf = Workflow("typed")
wf.add_node("double", Double())
wf.add_node("scale", scale(factor=3.0))
wf.add_node("fetch", HTTPRequestNode(url="http://127.0.0.1:9/"))
results, run_id = LocalRuntime(store=None).execute(wf, parameters={"double": {"x": 21}})
doubled: int = results["double"]["result"]
runtime: ParallelRuntime = ParallelRuntime()
'''


def exported(module_name: str) -> tuple[set[str], set[str]]:
    """(names in the lazy export table, names imported under ``if TYPE_CHECKING``)."""
    path = PACKAGE_ROOT / (module_name.replace(".", "/") + "/__init__.py")
    tree = ast.parse(path.read_text())
    table: set[str] = set()
    typed: set[str] = set()
    stub = path.with_suffix(".pyi")
    if stub.exists():  # the root package: a stub (the import layering counts TYPE_CHECKING imports)
        for imp in ast.parse(stub.read_text()).body:
            if isinstance(imp, ast.ImportFrom) and imp.module != "kailash._version":
                for alias in imp.names:
                    assert alias.asname == alias.name, f"{module_name}: re-export {alias.name} as itself"
                    typed.add(alias.name)
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Dict) and isinstance(stmt.targets[0], ast.Name) \
                and stmt.targets[0].id in ("_EXPORTS", "_LAZY", "_WHERE"):
            table = {k.value for k in stmt.value.keys if isinstance(k, ast.Constant)}
        if isinstance(stmt, ast.If) and isinstance(stmt.test, ast.Name) and stmt.test.id == "TYPE_CHECKING":
            for imp in stmt.body:
                assert isinstance(imp, ast.ImportFrom)
                for alias in imp.names:
                    assert alias.asname == alias.name, f"{module_name}: re-export {alias.name} as itself"
                    typed.add(alias.name)
    return table, typed


@pytest.mark.parametrize("module_name", LAZY_PACKAGES)
def test_every_lazy_export_is_visible_to_type_checkers(module_name):
    table, typed = exported(module_name)
    assert table, f"{module_name} has no lazy export table"
    assert typed == table


def test_import_kailash_imports_none_of_the_lazy_modules():
    code = "import sys, kailash; print(sorted(m for m in sys.modules if m.startswith('kailash')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(PACKAGE_ROOT)}).stdout
    assert eval(out) == ["kailash", "kailash._lazy", "kailash._version"]  # noqa: S307 - our own output


def test_a_user_script_passes_mypy_strict(tmp_path):
    pytest.importorskip("mypy")
    script = tmp_path / "user_workflow.py"
    script.write_text(textwrap.dedent(USER_SCRIPT))
    bad = tmp_path / "user_mistake.py"
    bad.write_text("from kailash import NodeParameter\n\nNodeParameter(type=int, minimum='1')\n")
    env = {**os.environ, "PYTHONPATH": str(PACKAGE_ROOT), "MYPYPATH": ""}
    cmd = [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--cache-dir", os.devnull,
           "--config-file", os.devnull]
    done = subprocess.run([*cmd, str(script)], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    # and the types are real, not Any: a wrong call is caught
    done = subprocess.run([*cmd, str(bad)], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert done.returncode == 1 and 'Argument "minimum" to "NodeParameter" has incompatible type "str"' in done.stdout, done.stdout
