"""Tool arguments against the tool's input JSON Schema, with the maintained ``jsonschema`` validator.

Imported lazily by the agent loop and the offline planner: every tool call, planned or
asked for by a model, is checked here before it is sent.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["schema_problems"]


def schema_problems(schema: dict[str, Any] | None, arguments: Any) -> list[str]:
    """Why ``arguments`` do not fit the tool's input JSON Schema (empty when they fit).

    Uses the draft the schema names (``$schema``), else 2020-12.

    Example:
        >>> schema_problems({"type": "object", "properties": {"values": {"type": "array", "items": {"type": "number"}}},
        ...                  "required": ["values"]}, {"values": ["market"]})
        ["values/0: 'market' is not of type 'number'"]
    """
    import jsonschema

    odd = _not_json_numbers(arguments, "", 0)
    if odd:  # NaN passes every bound (each comparison is false) and neither can be sent as JSON
        return [f"{where or '(arguments)'}: {value!r} is not a JSON number" for where, value in odd[:10]]
    schema = schema or {"type": "object"}
    try:
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        errors = sorted(cls(schema).iter_errors(arguments), key=lambda e: [str(p) for p in e.absolute_path])
    except jsonschema.exceptions.SchemaError as exc:  # the server's schema is broken: say so, do not send blind
        return [f"the tool's own input schema is invalid: {exc.message}"]
    return [f"{'/'.join(str(p) for p in e.absolute_path) or '(arguments)'}: {e.message}" for e in errors]


def _not_json_numbers(value: Any, where: str, depth: int) -> list[tuple[str, float]]:
    """Where ``value`` holds NaN or an infinity (JSON has neither)."""
    if isinstance(value, float):
        return [] if math.isfinite(value) else [(where, value)]
    if depth > 64:
        return []
    if isinstance(value, dict):
        return [x for k, v in value.items() for x in _not_json_numbers(v, f"{where}/{k}".lstrip("/"), depth + 1)]
    if isinstance(value, (list, tuple)):
        return [x for i, v in enumerate(value) for x in _not_json_numbers(v, f"{where}/{i}".lstrip("/"), depth + 1)]
    return []
