"""Data nodes: file readers and writers, SQL, event streams.

Names are re-exported lazily, so ``from kailash.nodes.data import SQLDatabaseNode`` works
without importing every data module (or their optional dependencies) up front.
"""

from __future__ import annotations

from kailash._lazy import lazy_exports

_EXPORTS = {
    "CSVReaderNode": "kailash.nodes.data.readers", "JSONReaderNode": "kailash.nodes.data.readers", "TextReaderNode": "kailash.nodes.data.readers", "BatchStream": "kailash.nodes.data.readers",
    "CSVWriterNode": "kailash.nodes.data.writers", "JSONWriterNode": "kailash.nodes.data.writers", "TextWriterNode": "kailash.nodes.data.writers",
    "SQLDatabaseNode": "kailash.nodes.data.sql",
    "EventStreamNode": "kailash.nodes.data.streaming",
    "WindowNode": "kailash.nodes.data.windows",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports("kailash.nodes.data", _EXPORTS, globals())

