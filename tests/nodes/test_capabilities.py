"""The capability model on its own: declarations, scopes, checks, ${ENV} and tenant files."""

from __future__ import annotations

import pytest

from kailash.errors import SecurityError
from kailash.nodes.base import Node
from kailash.nodes.capabilities import (
    CAPABILITIES,
    DEFAULT_TENANT_CAPABILITIES,
    TenantScope,
    check_capability_names,
    current_tenant,
    refuse_env_references,
    require,
    tenant_file,
    tenant_scope,
    workflow_problems,
)
from kailash.nodes.registry import list_node_types
from kailash.workflow import Workflow


def _scope(tmp_path, caps=DEFAULT_TENANT_CAPABILITIES) -> TenantScope:
    return TenantScope(tenant_id="acme", capabilities=frozenset(caps), files_dir=str(tmp_path))


def test_every_catalog_node_declares_known_capabilities():
    for name, cls in list_node_types().items():
        if cls.__module__.startswith("kailash."):
            assert cls.capabilities is not None, name
            assert set(cls.capabilities) <= set(CAPABILITIES), name


def test_nothing_is_refused_outside_a_tenant_scope(tmp_path):
    assert current_tenant() is None
    require("host_process", who="x", what="y")
    refuse_env_references({"a": "${HOME}"}, where="here")
    assert tenant_file("/etc/passwd", who="x", parameter="p") == "/etc/passwd"


def test_require_names_the_capability_the_tenant_and_the_fix(tmp_path):
    with tenant_scope(_scope(tmp_path)):
        require("network", who="x", what="y")
        with pytest.raises(SecurityError, match=r"node 'n' \(T\): starting it needs the 'host_env' capability, "
                                                r"which tenant 'acme' is not granted .*--grant host_env"):
            require("host_env", who="node 'n' (T)", what="starting it")
    assert current_tenant() is None


def test_env_references_are_found_at_any_depth_but_only_exact_ones(tmp_path):
    with tenant_scope(_scope(tmp_path)):
        refuse_env_references({"a": ["price is ${5}", "${a} ${b}", 3, None]}, where="p")  # not references
        with pytest.raises(SecurityError, match=r"refers to environment variable \$\{KEY\}"):
            refuse_env_references({"a": [{"b": ("x", "${KEY}")}]}, where="p")
        with pytest.raises(SecurityError, match="nested more than 200 levels"):
            deep: list = []
            for _ in range(300):
                deep = [deep]
            refuse_env_references(deep, where="p")
    with tenant_scope(_scope(tmp_path, {"host_env"})):
        refuse_env_references("${KEY}", where="p")  # granted


def test_tenant_files_resolve_inside_its_directory(tmp_path):
    (tmp_path / "sub").mkdir()
    outside = tmp_path.parent / "outside-link-target"
    outside.mkdir(exist_ok=True)
    (tmp_path / "link").symlink_to(outside)
    with tenant_scope(_scope(tmp_path)):
        assert tenant_file("sub/a.yaml", who="w", parameter="p") == str(tmp_path.resolve() / "sub" / "a.yaml")
        assert tenant_file(str(tmp_path / "b.db"), who="w", parameter="p") == str(tmp_path.resolve() / "b.db")
        for bad in ("../x", "/etc/passwd", "link/x", "a\x00b", str(tmp_path) + "-sibling/x"):
            with pytest.raises(SecurityError, match="outside tenant 'acme''s own directory"):
                tenant_file(bad, who="w", parameter="p")
        with pytest.raises(SecurityError, match="must be a path string"):
            tenant_file(b"/etc/passwd", who="w", parameter="p")


def test_workflow_problems_refuse_undeclared_and_ungranted_node_types(tmp_path):
    class UndeclaredNode(Node):
        def run(self, **inputs):
            return {}

    wf = Workflow("w")
    wf.add_node("u", UndeclaredNode())
    wf.add_node("c", "PythonCodeNode", code="result = 1")
    wf.add_node("m", "MCPClientNode", server_config="http://127.0.0.1:1/mcp")
    problems = workflow_problems(wf, frozenset({"files"}), tenant_id="acme")
    assert problems == [
        "node 'u' (UndeclaredNode): this node type does not declare what it touches on the host (class attribute "
        "'capabilities'), so tenants cannot use it",
        "node 'c' (PythonCodeNode) needs the capability 'code', which tenant 'acme' is not granted",
        "node 'm' (MCPClientNode) needs the capability 'network', which tenant 'acme' is not granted",
    ]


def test_capability_names_are_checked():
    assert check_capability_names(["code", "files"]) == frozenset({"code", "files"})
    for bad in ("code", ["root"], [1]):
        with pytest.raises(SecurityError):
            check_capability_names(bad)
    with pytest.raises(SecurityError, match="expects a TenantScope"):
        with tenant_scope("acme"):  # type: ignore[arg-type]
            pass
