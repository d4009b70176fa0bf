"""The gateway's seams: one state object that no other module reaches into."""

from __future__ import annotations

import ast
from pathlib import Path

import kailash

PACKAGE = Path(kailash.__file__).parent
GATEWAY_NAMES = {"gw", "gateway", "gate"}


def _reach_ins(path: Path) -> list[str]:
    """``gw._x`` / ``self.gateway._x`` / ``app.state`` uses in one module."""
    where = path.relative_to(PACKAGE) if path.is_relative_to(PACKAGE) else path.name
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Attribute):
            continue
        owner = node.value
        owner_name = owner.id if isinstance(owner, ast.Name) else owner.attr if isinstance(owner, ast.Attribute) else ""
        private = node.attr.startswith("_") and not node.attr.startswith("__")
        if private and owner_name in GATEWAY_NAMES:
            found.append(f"{where}:{node.lineno}: {owner_name}.{node.attr}")
        if node.attr == "state" and owner_name == "app":
            found.append(f"{where}:{node.lineno}: app.state")
    return found


def test_no_module_reads_the_gateways_private_attributes_or_app_state():
    modules = [p for d in ("api", "cli") for p in sorted((PACKAGE / d).rglob("*.py")) if p.name != "gateway.py"]
    assert len(modules) > 20
    offenders = [hit for p in modules for hit in _reach_ins(p)]
    assert offenders == []


def test_the_check_sees_a_reach_in(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def f(gw, app, self):\n    return gw._workspaces, app.state.gateway, self.gateway._limit\n")
    assert sorted(h.split(": ")[1] for h in _reach_ins(sample)) == ["app.state", "gateway._limit", "gw._workspaces"]


def test_every_route_installer_is_installed_once():
    from starlette.routing import Route, WebSocketRoute

    from kailash.api.gateway import WorkflowGateway

    app = WorkflowGateway(port=0, api_keys=["k"]).app
    seen = [(r.path, tuple(sorted(getattr(r, "methods", None) or ()))) for r in app.routes
            if isinstance(r, (Route, WebSocketRoute))]
    assert len(seen) == len(set(seen))
    paths = {p for p, _ in seen}
    assert {"/health", "/nodes", "/studio", "/workflows", "/validate", "/workflows/{name}/execute", "/runs",
            "/runs/{run_id}", "/runs/{run_id}/events", "/ws/runs/{run_id}"} <= paths
