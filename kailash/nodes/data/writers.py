"""File writers: CSV, JSON (and JSON lines), text.

Each writes through :func:`kailash.security.paths.safe_open`, takes its rows from the
primary input ``data`` and reports what it wrote. A :class:`~kailash.nodes.data.readers.BatchStream`
(or any iterator of batches) is written batch by batch, never held whole in memory.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Iterator
from typing import Any

from kailash.errors import NodeExecutionError
from kailash.nodes import progress
from kailash.nodes.base import Node, NodeParameter, register_node
from kailash.nodes.data.readers import BatchStream, tenant_path
from kailash.security.paths import safe_open

__all__ = ["CSVWriterNode", "JSONWriterNode", "TextWriterNode"]

_FILE = NodeParameter(type=str, required=True, description="path of the file to write")
_DATA = NodeParameter(required=True, description="what to write")
_ENC = NodeParameter(type=str, default="utf-8", description="text encoding")
_APPEND = NodeParameter(type=bool, default=False, description="append instead of overwriting")


def _is_stream(data: Any) -> bool:
    return isinstance(data, BatchStream) or (isinstance(data, Iterator) and not isinstance(data, (str, bytes)))


def _records(data: Any) -> Iterator[Any]:
    if _is_stream(data):
        for batch in data:
            if isinstance(batch, list):
                yield from batch
            else:
                yield batch
    elif isinstance(data, (list, tuple)):
        yield from data
    else:
        yield data


@register_node(category="data")
class CSVWriterNode(Node):
    """Write rows (dicts or lists) to a CSV file; dict rows get a header from their keys."""

    capabilities = frozenset({"files"})

    primary_input = "data"
    primary_output = "rows_written"

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {
            "file_path": _FILE,
            "data": _DATA,
            "delimiter": NodeParameter(type=str, default=",", description="field delimiter"),
            "headers": NodeParameter(type=list, default=None, description="column order (default: first row's keys)"),
            "encoding": _ENC,
            "append": _APPEND,
        }

    def get_outputs(self) -> dict[str, NodeParameter]:
        return {"rows_written": NodeParameter(type=int), "file_path": NodeParameter(type=str)}

    def run(self, file_path: str, data: Any, delimiter: str = ",", headers: list[str] | None = None,
            encoding: str = "utf-8", append: bool = False, **_: Any) -> dict[str, Any]:
        file_path = tenant_path(self, file_path)
        count = 0
        with safe_open(file_path, "a" if append else "w", encoding=encoding, newline="", node_id=self.name, make_parents=True) as f:
            existing = append and os.fstat(f.fileno()).st_size > 0  # measured on the file opened, not the path
            writer: Any = None
            for row in progress.counted(_records(data), node=self.name or type(self).__name__, what="written"):
                if writer is None:
                    if isinstance(row, dict):
                        writer = csv.DictWriter(f, fieldnames=headers or list(row), delimiter=delimiter,
                                                extrasaction="ignore")
                        if not existing:
                            writer.writeheader()
                    else:
                        writer = csv.writer(f, delimiter=delimiter)
                        if headers and not existing:
                            writer.writerow(headers)
                if isinstance(row, dict) != isinstance(writer, csv.DictWriter):
                    raise NodeExecutionError(
                        f"node {self.label} (CSVWriterNode): row {count + 1} is a {type(row).__name__} but earlier "
                        "rows were not; give all rows as dicts or all as lists",
                        node_id=self.name, parameter="data", expected="rows of one kind",
                    )
                writer.writerow(row if isinstance(row, (dict, list, tuple)) else [row])
                count += 1
        return {"rows_written": count, "file_path": file_path}


@register_node(category="data")
class JSONWriterNode(Node):
    """Write data as JSON (``.jsonl``/``lines=True``: one record per line, appendable)."""

    capabilities = frozenset({"files"})

    primary_input = "data"
    primary_output = "file_path"

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {
            "file_path": _FILE,
            "data": _DATA,
            "indent": NodeParameter(type=int, default=2, description="indentation (None for compact)"),
            "encoding": _ENC,
            "lines": NodeParameter(type=bool, default=None, description="JSON lines (default: by .jsonl extension)"),
            "append": _APPEND,
        }

    def get_outputs(self) -> dict[str, NodeParameter]:
        return {"file_path": NodeParameter(type=str), "records_written": NodeParameter(type=int)}

    def run(self, file_path: str, data: Any, indent: int | None = 2, encoding: str = "utf-8",
            lines: bool | None = None, append: bool = False, **_: Any) -> dict[str, Any]:
        file_path = tenant_path(self, file_path)
        if lines is None:
            lines = str(file_path).endswith((".jsonl", ".ndjson")) or _is_stream(data)
        mode = "a" if append else "w"
        try:
            with safe_open(file_path, mode, encoding=encoding, node_id=self.name, make_parents=True) as f:
                if lines:
                    count = 0
                    for rec in progress.counted(_records(data), node=self.name or type(self).__name__, what="written"):
                        f.write(json.dumps(rec, default=_default) + "\n")
                        count += 1
                else:
                    json.dump(data, f, indent=indent, default=_default)
                    f.write("\n")
                    count = len(data) if isinstance(data, (list, tuple)) else 1  # a dict is one record
        except TypeError as exc:
            raise NodeExecutionError(
                f"node {self.label} (JSONWriterNode): data cannot be written as JSON: {exc}",
                node_id=self.name, parameter="data", expected="JSON-serialisable data",
            ) from None
        return {"file_path": file_path, "records_written": count}


def _default(value: Any) -> Any:
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    from kailash.security.secrets import Secret

    if isinstance(value, Secret):
        return value.to_reference()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


@register_node(category="data")
class TextWriterNode(Node):
    """Write text (a string, or lines from a list / stream) to a file."""

    capabilities = frozenset({"files"})

    primary_input = "data"
    primary_output = "file_path"

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {"file_path": _FILE, "data": _DATA, "encoding": _ENC, "append": _APPEND}

    def get_outputs(self) -> dict[str, NodeParameter]:
        return {"file_path": NodeParameter(type=str), "bytes_written": NodeParameter(type=int)}

    def run(self, file_path: str, data: Any, encoding: str = "utf-8", append: bool = False, **_: Any) -> dict[str, Any]:
        file_path = tenant_path(self, file_path)
        written = 0
        with safe_open(file_path, "a" if append else "w", encoding=encoding, node_id=self.name, make_parents=True) as f:
            if isinstance(data, str):
                written += f.write(data)
            elif isinstance(data, Iterable):
                for line in _records(data):
                    written += f.write(f"{line}\n")
            else:
                written += f.write(str(data))
        return {"file_path": file_path, "bytes_written": written}
