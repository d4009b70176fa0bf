"""Nodes import neither the runtime nor the workflow package; the runtime hands them what they need."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120, cwd=str(ROOT), env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def test_importing_the_node_catalog_loads_no_runtime_workflow_or_api():
    out = _run("""
        import sys
        import kailash.nodes.logic.workflow, kailash.nodes.mcp, kailash.nodes.code.python, kailash.nodes.base
        up = sorted(m for m in sys.modules if m.startswith(("kailash.runtime", "kailash.workflow", "kailash.api")))
        print(up)
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_a_workflow_node_run_on_its_own_without_a_runtime_says_what_to_do():
    out = _run("""
        from kailash.nodes.logic.workflow import WorkflowNode
        from kailash.errors import NodeConfigurationError
        node = WorkflowNode(workflow={"name": "inner", "nodes": [
            {"id": "a", "type": "PythonCodeNode", "config": {"code": "result = 1"}}]})
        try:
            node.execute()
        except NodeConfigurationError as exc:
            print(exc)
    """)
    assert out.returncode == 0, out.stderr
    assert "needs a runtime: import kailash.runtime" in out.stdout


def test_with_the_runtime_loaded_a_workflow_node_runs_on_its_own():
    out = _run("""
        import kailash.runtime
        from kailash.nodes.logic.workflow import WorkflowNode
        node = WorkflowNode(workflow={"name": "inner", "nodes": [
            {"id": "a", "type": "PythonCodeNode", "config": {"code": "result = 41 + 1"}}]})
        print(node.execute())
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "{'result': 42}"


def _lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()",
         "--no-cache"], capture_output=True, text=True, timeout=120, cwd=str(tree),
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"})


def test_the_package_keeps_its_layers():
    pytest.importorskip("importlinter")
    out = _lint_imports(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr


def test_an_import_pointing_up_inside_a_function_breaks_the_layers(tmp_path):
    pytest.importorskip("importlinter")
    shutil.copytree(ROOT / "kailash", tmp_path / "kailash", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    with open(tmp_path / "kailash" / "nodes" / "registry.py", "a") as f:
        f.write("\n\ndef _sneaky():\n    from kailash.runtime.local import LocalRuntime\n\n    return LocalRuntime\n")
    out = _lint_imports(tmp_path)
    assert out.returncode != 0
    assert "kailash.nodes.registry -> kailash.runtime.local" in out.stdout
