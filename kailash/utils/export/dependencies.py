"""What a workflow needs installed to run elsewhere: Kailash extras, Python packages, node modules.

Used by :mod:`kailash.utils.export`. The extras come from where each node's class
lives (``kailash.nodes.api`` needs ``http``, ``kailash.nodes.mcp`` needs ``mcp``...) and
from its configuration (a PostgreSQL connection string needs ``postgres``); the
third-party packages from the ``imports`` and ``import`` statements of PythonCodeNode
code, pinned to the versions installed here. Custom node classes are reported with
their modules so an image can import them. This module reads; it never installs.
"""

from __future__ import annotations

import ast
import functools
import inspect
import sys
import textwrap
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kailash import _ast as safe_ast
from kailash.security.secrets import reveal

if TYPE_CHECKING:
    from kailash.nodes.base import Node
    from kailash.workflow.graph import Workflow

__all__ = ["Dependencies", "CustomNodeModule", "workflow_dependencies", "sdk_version"]

# Module prefix of a built-in node -> the extra it needs (longest prefix wins).
_EXTRA_BY_MODULE = {
    "kailash.nodes.api": "http",
    "kailash.nodes.data.streaming": "http",
    "kailash.nodes.ai": "ai",
    "kailash.nodes.mcp": "mcp",
}
# Import names whose distribution is called differently on PyPI (used when not installed here).
_DIST_ALIASES = {
    "sklearn": "scikit-learn",
    "PIL": "Pillow",
    "yaml": "PyYAML",
    "cv2": "opencv-python",
    "bs4": "beautifulsoup4",
    "dateutil": "python-dateutil",
    "dotenv": "python-dotenv",
}


@dataclass(frozen=True, kw_only=True)
class CustomNodeModule:
    """A node class from outside Kailash that the target environment must import.

    Attributes:
        node_type: the registered type name used in the workflow file.
        module: the module defining it (imported by the image before loading the workflow).
        distribution: the installed package that provides the module, if any (pinned).
        source: the module's top-level file or package directory when no package provides it.
        importable: False when the class cannot be imported by name (defined in ``__main__``
            or inside a function); such a workflow can be saved but not shipped.
    """

    node_type: str
    module: str
    distribution: str | None = None
    source: Path | None = None
    importable: bool = True


@dataclass(kw_only=True)
class Dependencies:
    """The packages a workflow needs, as computed by :func:`workflow_dependencies`."""

    extras: list[str] = field(default_factory=list)
    packages: list[str] = field(default_factory=list)
    node_types: list[str] = field(default_factory=list)
    custom_nodes: list[CustomNodeModule] = field(default_factory=list)

    @property
    def kailash_requirement(self) -> str:
        """``kailash[extra,...]==VERSION``, what ``pip install`` needs for this workflow."""
        extras = f"[{','.join(self.extras)}]" if self.extras else ""
        return f"kailash{extras}=={sdk_version()}"

    @property
    def node_modules(self) -> list[str]:
        """Modules to import so the custom node types register before the workflow loads."""
        return sorted({c.module for c in self.custom_nodes})

    def to_dict(self) -> dict[str, Any]:
        """The ``dependencies`` section of an export document."""
        out: dict[str, Any] = {
            "python": _requires_python(),
            "kailash": self.kailash_requirement,
            "extras": list(self.extras),
            "packages": list(self.packages),
            "node_types": list(self.node_types),
        }
        if self.custom_nodes:
            out["node_modules"] = self.node_modules
        return out


def sdk_version() -> str:
    """The version of this Kailash SDK (what an image installs)."""
    from kailash._version import __version__

    return __version__


def _requires_python() -> str:
    try:
        return metadata.metadata("kailash")["Requires-Python"] or ">=3.11"
    except metadata.PackageNotFoundError:
        return ">=3.11"


def workflow_dependencies(workflow: Workflow) -> Dependencies:
    """Everything ``workflow`` (and any sub-workflow it embeds) needs installed."""
    extras: set[str] = set()
    imports: set[str] = set()
    types: set[str] = set()
    custom: dict[str, CustomNodeModule] = {}
    _collect(workflow, extras, imports, types, custom, depth=0)
    dists = _distributions() if imports else {}  # scanning installed packages costs ~0.5 s: only when needed
    packages = sorted({_requirement(name, dists) for name in imports}, key=str.lower)
    for c in custom.values():
        if c.distribution:
            packages.append(c.distribution)
    return Dependencies(
        extras=sorted(extras),
        packages=sorted(set(packages), key=str.lower),
        node_types=sorted(types),
        custom_nodes=sorted(custom.values(), key=lambda c: c.node_type),
    )


def _collect(
    wf: Any, extras: set[str], imports: set[str], types: set[str], custom: dict[str, CustomNodeModule], depth: int
) -> None:
    if depth > 20:  # a workflow embedding itself through files; validation reports the real problem
        return
    for node in wf.nodes.values():
        cls = type(node)
        types.add(cls.__name__)
        module = cls.__module__
        if module == "kailash" or module.startswith("kailash."):
            extras.update(_extras_of(node, module))
        elif cls.__name__ not in custom:
            custom[cls.__name__] = _custom_module(cls)
        if cls.__name__ == "PythonCodeNode":
            imports.update(_code_imports(node))
        if cls.__name__ == "WorkflowNode":
            inner = _inner_workflow(node)
            if inner is not None:
                _collect(inner, extras, imports, types, custom, depth + 1)


def _extras_of(node: Node, module: str) -> set[str]:
    out = set()
    best = max((p for p in _EXTRA_BY_MODULE if module == p or module.startswith(p + ".")), key=len, default=None)
    if best:
        out.add(_EXTRA_BY_MODULE[best])
    cfg = node.config
    if module == "kailash.nodes.data.sql":
        cs = reveal(cfg.get("connection_string"))
        if not isinstance(cs, str) or cs.startswith("${") or cs.split(":", 1)[0].startswith("postgres"):
            out.add("postgres")  # a reference resolved at run time may well be PostgreSQL
    if cfg.get("mcp_servers") or cfg.get("mcp_server"):
        out.add("mcp")
    if str(cfg.get("embedder") or "") in ("minilm", "auto", "sentence"):
        out.add("embeddings")
    from kailash.nodes.extras import needed_modules

    if any(extra == "local-llm" for _, extra in needed_modules(node)):  # provider="local": llama.cpp in process
        out.add("local-llm")
    return out


def _code_imports(node: Node) -> set[str]:
    names = {str(spec).partition(" as ")[0].strip().split(".")[0] for spec in node.config.get("imports") or ()}
    code = node.config.get("code")
    if isinstance(code, str):
        try:
            tree = safe_ast.parse(textwrap.dedent(code))
        except SyntaxError:
            tree = None
        for stmt in ast.walk(tree) if tree is not None else ():
            if isinstance(stmt, ast.Import):
                names.update(a.name.split(".")[0] for a in stmt.names)
            elif isinstance(stmt, ast.ImportFrom) and stmt.level == 0 and stmt.module:
                names.add(stmt.module.split(".")[0])
    return {n for n in names if n and n not in sys.stdlib_module_names and n != "kailash" and n != "__future__"}


def _inner_workflow(node: Node) -> Any:
    from kailash.workflow.graph import Workflow

    inner = node.config.get("workflow")
    if isinstance(inner, Workflow):
        return inner
    try:
        if isinstance(inner, dict):
            return Workflow.from_dict(inner)
        path = node.config.get("workflow_path")
        if isinstance(path, str) and Path(path).is_file():
            return Workflow.load(path)
    except Exception:  # the exporter's validation reports a broken sub-workflow itself
        return None
    return None


@functools.lru_cache(maxsize=1)
def _distributions() -> dict[str, list[str]]:
    try:
        return dict(metadata.packages_distributions())
    except Exception:  # pragma: no cover - broken metadata in the environment
        return {}


def _requirement(import_name: str, dists: dict[str, list[str]]) -> str:
    """``dist==version`` for an installed import name, else the best-known distribution name."""
    for dist in dists.get(import_name, []):
        try:
            return f"{dist}=={metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            continue
    return _DIST_ALIASES.get(import_name, import_name)


def _custom_module(cls: type) -> CustomNodeModule:
    module = cls.__module__
    name = cls.__name__
    if module == "__main__" or "<locals>" in cls.__qualname__:
        return CustomNodeModule(node_type=name, module=module, importable=False)
    top = module.split(".")[0]
    for dist in _distributions().get(top, []):
        try:
            return CustomNodeModule(node_type=name, module=module, distribution=f"{dist}=={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            continue
    top_module = sys.modules.get(top)
    source: Path | None = None
    try:
        file = inspect.getsourcefile(top_module) if top_module is not None else None
    except TypeError:
        file = None
    if file:
        p = Path(file)
        source = p.parent if p.name == "__init__.py" else p
    return CustomNodeModule(node_type=name, module=module, source=source, importable=source is not None)
