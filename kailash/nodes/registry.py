"""The node registry: node type names to classes.

Catalog nodes register with the :func:`register_node` class decorator; any other
concrete ``Node`` subclass registers itself under its class name when defined, so a
user's own node can be named in a saved workflow. The full built-in catalog is
imported only when someone asks for it (the CLI catalog, loading a saved workflow,
the Studio palette) — never at ``import kailash``.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import logging
import pkgutil
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from kailash.errors import UnknownNodeTypeError

if TYPE_CHECKING:
    from kailash.nodes.base import Node

__all__ = ["register_node", "get_node_class", "list_node_types", "describe_node", "load_catalog"]

logger = logging.getLogger(__name__)

_explicit: dict[str, type] = {}
_implicit: dict[str, type] = {}
_catalog_loaded = False
_catalog_skipped: dict[str, str] = {}

T = TypeVar("T", bound=type)


def register_node(name: str | None = None, *, aliases: tuple[str, ...] = (), category: str | None = None) -> Callable[[T], T]:
    """Class decorator that adds a node class to the catalog.

    Example:
        >>> from kailash.nodes.base import Node, NodeParameter, register_node
        >>> @register_node()
        ... class DoubleNode(Node):
        ...     def get_parameters(self):
        ...         return {"x": NodeParameter(type=int, required=True)}
        ...     def run(self, x):
        ...         return {"result": 2 * x}
        >>> from kailash.nodes.registry import get_node_class
        >>> get_node_class("DoubleNode") is DoubleNode
        True
    """

    def decorate(cls: T) -> T:
        key = name or cls.__name__
        for n in (key, *aliases):
            _explicit[n] = cls
        cls._catalog_category = category or _category_of(cls)  # type: ignore[attr-defined]
        return cls

    return decorate


def _auto_register(cls: type) -> None:
    _implicit[cls.__name__] = cls


def _category_of(cls: type) -> str:
    parts = cls.__module__.split(".")
    if len(parts) >= 3 and parts[0] == "kailash" and parts[1] == "nodes":
        return parts[2]
    return "custom"


def load_catalog() -> dict[str, str]:
    """Import every module under ``kailash.nodes`` so the whole catalog registers.

    Returns the modules that could not be imported (usually an optional extra that is
    not installed), with the reason, so callers can show them.
    """
    global _catalog_loaded
    if _catalog_loaded:
        return dict(_catalog_skipped)
    import kailash.nodes as pkg

    for info in pkgutil.walk_packages(pkg.__path__, "kailash.nodes."):
        try:
            importlib.import_module(info.name)
        except ImportError as exc:  # an optional dependency is missing
            _catalog_skipped[info.name] = str(exc)
            logger.debug("node module %s not loaded: %s", info.name, exc)
        except Exception as exc:  # a broken module must not hide the rest of the catalog
            _catalog_skipped[info.name] = f"{type(exc).__name__}: {exc}"
            logger.warning("node module %s failed to import: %s", info.name, exc)
    _catalog_loaded = True
    return dict(_catalog_skipped)


def _concrete(cls: type) -> bool:
    return not inspect.isabstract(cls) and not getattr(cls, "_abstract_node", False)


def get_node_class(name: str) -> type[Node]:
    """The node class registered as ``name``; raises UnknownNodeTypeError with close matches."""
    cls = _explicit.get(name) or _implicit.get(name)
    if cls is None and not _catalog_loaded:
        load_catalog()
        cls = _explicit.get(name) or _implicit.get(name)
    if cls is None or not _concrete(cls):
        known = list_node_types()
        close = difflib.get_close_matches(name, list(known), n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; run `kailash nodes` for the catalog"
        raise UnknownNodeTypeError(
            f"unknown node type '{name}'{hint}", expected="a registered node type", got=name, suggestions=close
        )
    return cls


def list_node_types(*, include_custom: bool = True) -> dict[str, type[Node]]:
    """Every registered, concrete node type by name (loads the built-in catalog)."""
    load_catalog()
    out: dict[str, type] = {}
    if include_custom:
        for n, c in _implicit.items():
            if _concrete(c) and not n.startswith("_"):
                out[n] = c
    out.update({n: c for n, c in _explicit.items() if _concrete(c)})
    return dict(sorted(out.items()))


def describe_node(cls: type[Node], name: str | None = None) -> dict[str, Any]:
    """A JSON-ready description: name, category, docs and parameter schema.

    Parameters come from an instance built with no config; a node whose parameters
    depend on config shows its config-independent ones.
    """
    try:
        params = cls().parameters  # type: ignore[call-arg]
    except Exception:  # a node that cannot be built bare still gets listed
        params = {}
    doc = inspect.getdoc(cls) or ""
    return {
        "name": name or cls.__name__,
        "category": getattr(cls, "_catalog_category", _category_of(cls)),
        "description": doc.split("\n\n")[0].replace("\n", " "),
        "doc": doc,
        "parameters": [p.to_dict() for p in params.values()],
        "primary_input": getattr(cls, "primary_input", None),
        "primary_output": getattr(cls, "primary_output", None),
        "is_async": bool(getattr(cls, "is_async", False)),
        "extra_inputs": bool(getattr(cls, "extra_inputs", False)),
        "capabilities": None if (caps := getattr(cls, "capabilities", None)) is None else sorted(caps),
    }
