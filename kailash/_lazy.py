"""Lazy re-exports for package ``__init__`` modules (PEP 562 ``__getattr__``).

A package lists ``{name: "module.path"}``; a name's module is imported on first use and
the value cached in the package namespace, so ``import kailash`` stays light.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: dict[str, str], namespace: dict[str, Any]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``exports[name]`` on first access.

    Example:
        >>> ns = {}
        >>> getter = lazy_exports("demo", {"dumps": "json"}, ns)
        >>> getter("dumps")({"a": 1}), "dumps" in ns
        ('{"a": 1}', True)
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    return __getattr__
