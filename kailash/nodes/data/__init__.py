"""Data nodes: file readers and writers, SQL, event streams.

Names are re-exported lazily, so ``from kailash.nodes.data import SQLDatabaseNode`` works
without importing every data module (or their optional dependencies) up front.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "CSVReaderNode": "readers", "JSONReaderNode": "readers", "TextReaderNode": "readers", "BatchStream": "readers",
    "CSVWriterNode": "writers", "JSONWriterNode": "writers", "TextWriterNode": "writers",
    "SQLDatabaseNode": "sql",
    "EventStreamNode": "streaming",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'kailash.nodes.data' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"kailash.nodes.data.{module}"), name)
    globals()[name] = value
    return value
