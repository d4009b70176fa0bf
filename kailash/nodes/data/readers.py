"""File readers: CSV, JSON (and JSON lines), text.

Each reads through :func:`kailash.security.paths.safe_open` and outputs ``data``. With
``batch_size`` a reader streams: ``data`` is a :class:`BatchStream`, an iterable of
lists read lazily from the file, so a file far larger than memory can flow through a
workflow one batch at a time (a writer downstream writes batches as they come).
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from kailash.errors import NodeExecutionError
from kailash.nodes import progress
from kailash.nodes.base import Node, NodeParameter, register_node
from kailash.nodes.capabilities import current_tenant, tenant_file
from kailash.security.paths import safe_open, validate_path

__all__ = ["CSVReaderNode", "JSONReaderNode", "TextReaderNode", "BatchStream"]


class BatchStream:
    """A lazily read sequence of batches (lists). Iterate it once or more; each pass re-reads."""

    def __init__(self, open_batches: Callable[[], Iterator[list[Any]]], description: str) -> None:
        self._open = open_batches
        self.description = description

    def __iter__(self) -> Iterator[list[Any]]:
        return self._open()

    def records(self) -> Iterator[Any]:
        """Every record, batch after batch."""
        for batch in self:
            yield from batch

    def __repr__(self) -> str:
        return f"BatchStream({self.description})"


def _batched(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


_INT = re.compile(r"^[+-]?(0|[1-9][0-9]*)$")
_FLOAT = re.compile(r"^[+-]?(0|[1-9][0-9]*)?\.[0-9]+([eE][+-]?[0-9]+)?$|^[+-]?(0|[1-9][0-9]*)[eE][+-]?[0-9]+$")


def _convert(value: str) -> Any:
    """'42' -> 42 and '2.5' -> 2.5; text with leading zeros ('007') or anything else stays text."""
    if _INT.match(value):
        return int(value)
    if _FLOAT.match(value):
        return float(value)
    return value


_FILE = NodeParameter(type=str, required=True, description="path of the file to read")
_ENC = NodeParameter(type=str, default="utf-8", description="text encoding")
_BATCH = NodeParameter(type=int, default=None, minimum=1, description="stream the file in batches of this many records")


@register_node(category="data")
class CSVReaderNode(Node):
    """Read a CSV file into a list of rows (dicts keyed by the header, or lists).

    Numbers are converted when the text round-trips exactly (``infer_types``).

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "people.csv")
        >>> _ = open(path, "w").write("id,name\\n1,ada\\n")
        >>> CSVReaderNode(file_path=path).execute()["data"]
        [{'id': 1, 'name': 'ada'}]
    """

    capabilities = frozenset({"files"})

    primary_output = "data"

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {
            "file_path": _FILE,
            "delimiter": NodeParameter(type=str, default=",", description="field delimiter"),
            "has_header": NodeParameter(type=bool, default=True, description="first row names the columns"),
            "encoding": _ENC,
            "infer_types": NodeParameter(type=bool, default=True, description="turn numeric text into numbers"),
            "batch_size": _BATCH,
        }

    def get_outputs(self) -> dict[str, NodeParameter]:
        return {"data": NodeParameter(name="data", type=list, description="rows")}

    def run(self, file_path: str, delimiter: str = ",", has_header: bool = True, encoding: str = "utf-8",
            infer_types: bool = True, batch_size: int | None = None, **_: Any) -> dict[str, Any]:
        file_path = tenant_path(self, file_path)
        _check_exists(self, file_path)

        def rows() -> Iterator[Any]:
            with safe_open(file_path, "r", encoding=_reading(encoding), newline="", node_id=self.name) as f:
                reader = csv.reader(f, delimiter=delimiter, strict=True)
                header: list[str] | None = None
                try:
                    for row in reader:
                        if not row:
                            continue
                        if has_header and header is None:
                            header = [h.strip() for h in row]
                            continue
                        values = [_convert(v) for v in row] if infer_types else row
                        if header is None:
                            yield values
                            continue
                        if len(values) != len(header):
                            raise NodeExecutionError(
                                f"node {self.label} (CSVReaderNode): malformed CSV line {reader.line_num} in "
                                f"'{file_path}': expected {len(header)} fields ({', '.join(header)}), got {len(values)}",
                                node_id=self.name, parameter="file_path",
                                expected=f"{len(header)} fields", got=len(values),
                            )
                        yield dict(zip(header, values, strict=True))
                except csv.Error as exc:
                    raise NodeExecutionError(
                        f"node {self.label} (CSVReaderNode): malformed CSV line {reader.line_num} in '{file_path}': {exc}",
                        node_id=self.name, parameter="file_path", expected="valid CSV",
                    ) from None

        label = self.name or type(self).__name__

        def counted_rows() -> Iterable[Any]:
            return progress.counted(rows(), node=label, what="read")

        if batch_size:
            return {"data": BatchStream(
                lambda: iter(progress.counted(_batched(iter(counted_rows()), batch_size), node=label, what="read",
                                              unit="batches", every=1)),
                f"{file_path}, {batch_size} rows/batch")}
        return {"data": list(counted_rows())}


@register_node(category="data")
class JSONReaderNode(Node):
    """Read a JSON file (``.jsonl``/``lines=True``: one JSON value per line)."""

    capabilities = frozenset({"files"})

    primary_output = "data"

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {
            "file_path": _FILE,
            "encoding": _ENC,
            "lines": NodeParameter(type=bool, default=None, description="JSON lines (default: by .jsonl extension)"),
            "batch_size": _BATCH,
        }

    def get_outputs(self) -> dict[str, NodeParameter]:
        return {"data": NodeParameter(name="data", description="the parsed JSON")}

    def run(self, file_path: str, encoding: str = "utf-8", lines: bool | None = None,
            batch_size: int | None = None, **_: Any) -> dict[str, Any]:
        file_path = tenant_path(self, file_path)
        _check_exists(self, file_path)
        if lines is None:
            lines = str(file_path).endswith((".jsonl", ".ndjson"))
        if lines:
            def records() -> Iterator[Any]:
                with safe_open(file_path, "r", encoding=_reading(encoding), node_id=self.name) as f:
                    for n, line in enumerate(f, 1):
                        if line.strip():
                            yield _parse_json(self, line, file_path, n)
            if batch_size:
                return {"data": BatchStream(lambda: _batched(records(), batch_size), f"{file_path}, {batch_size}/batch")}
            return {"data": list(records())}
        with safe_open(file_path, "r", encoding=_reading(encoding), node_id=self.name) as f:
            return {"data": _parse_json(self, f.read(), file_path, None)}


def _parse_json(node: Node, text: str, path: str, line: int | None) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"line {line}" if line is not None else f"line {exc.lineno} column {exc.colno}"
        raise NodeExecutionError(
            f"node {node.label} ({type(node).__name__}): malformed JSON in '{path}' at {where}: {exc.msg}",
            node_id=node.name, parameter="file_path", expected="valid JSON",
        ) from None


@register_node(category="data")
class TextReaderNode(Node):
    """Read a text file: ``data`` is the whole text (or, with ``batch_size``, batches of lines)."""

    capabilities = frozenset({"files"})

    primary_output = "data"

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {"file_path": _FILE, "encoding": _ENC, "batch_size": _BATCH}

    def get_outputs(self) -> dict[str, NodeParameter]:
        return {"data": NodeParameter(name="data", type=str, description="the text")}

    def run(self, file_path: str, encoding: str = "utf-8", batch_size: int | None = None, **_: Any) -> dict[str, Any]:
        file_path = tenant_path(self, file_path)
        _check_exists(self, file_path)
        if batch_size:
            def lines() -> Iterator[str]:
                with safe_open(file_path, "r", encoding=_reading(encoding), node_id=self.name) as f:
                    for line in f:
                        yield line.rstrip("\n")
            return {"data": BatchStream(lambda: _batched(lines(), batch_size), f"{file_path}, {batch_size} lines/batch")}
        with safe_open(file_path, "r", encoding=_reading(encoding), node_id=self.name) as f:
            return {"data": f.read()}


def _reading(encoding: str) -> str:
    """UTF-8 files saved with a byte-order mark (Excel, Notepad) read like plain UTF-8."""
    return "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding


def tenant_path(node: Node, path: Any) -> Any:
    """For a gateway tenant, the path inside its own directory (relative paths start there)."""
    return tenant_file(path, who=f"node {node.label} ({type(node).__name__})", parameter="file_path",
                       node_id=node.name) if current_tenant() is not None else path


def _check_exists(node: Node, path: str) -> None:
    validate_path(path, node_id=node.name)  # refuse before revealing whether the file exists
    if not os.path.exists(path):
        raise NodeExecutionError(
            f"node {node.label} ({type(node).__name__}): file '{path}' does not exist",
            node_id=node.name, parameter="file_path", expected="an existing file", got=str(path),
        )
