"""Tool arguments against the tool's input JSON Schema, with the maintained ``jsonschema`` validator.

Imported lazily by the agent loop and the offline planner: every tool call, planned or
asked for by a model, is checked here before it is sent.
"""

from __future__ import annotations

import functools
import math
import re
from typing import Any

#: the longest string a pattern that can backtrack exponentially is tried on; a longer one is
#: left to the server (``(a+)+$`` against 40 characters would hold the process for hours, and
#: Python's ``re`` holds the interpreter lock while it runs)
RISKY_PATTERN_CHARS = 16

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
    proto = _proto_keys(arguments, "", 0)
    if proto:  # what a JavaScript server merging the arguments into an object would take as its prototype
        return [f"{where or '(arguments)'}: the key '__proto__' is refused" for where in proto[:10]]
    schema = schema or {"type": "object"}
    try:
        cls = _guarded(jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator))
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


@functools.lru_cache(maxsize=64)
def _guarded(cls: Any) -> Any:
    """``cls`` whose ``pattern`` and ``patternProperties`` skip, on long strings, a pattern that
    can backtrack exponentially (a tool's schema comes from its server: it may be hostile)."""
    import jsonschema

    plain_pattern = cls.VALIDATORS.get("pattern")
    plain_props = cls.VALIDATORS.get("patternProperties")

    def pattern(validator: Any, patrn: Any, instance: Any, schema: Any) -> Any:
        if isinstance(instance, str) and len(instance) > RISKY_PATTERN_CHARS and risky_pattern(patrn):
            return  # not checked here: the server checks its own arguments
        yield from plain_pattern(validator, patrn, instance, schema)

    def pattern_properties(validator: Any, props: Any, instance: Any, schema: Any) -> Any:
        if isinstance(props, dict) and isinstance(instance, dict) and \
                any(isinstance(k, str) and len(k) > RISKY_PATTERN_CHARS for k in instance):
            props = {p: v for p, v in props.items() if not risky_pattern(p)}
        yield from plain_props(validator, props, instance, schema)

    changed = {k: f for k, f in (("pattern", pattern), ("patternProperties", pattern_properties))
               if cls.VALIDATORS.get(k) is not None}
    return jsonschema.validators.extend(cls, changed) if changed else cls


@functools.lru_cache(maxsize=1024)
def risky_pattern(pattern: Any) -> bool:
    """Whether ``pattern`` nests an unbounded repeat (or an alternation) inside another unbounded
    repeat, the shape of a regular expression that backtracks exponentially: ``(a+)+``, ``(a|a)*``.

    Example:
        >>> risky_pattern("^(a+)+$"), risky_pattern("^(a|ab)*$"), risky_pattern("^[a-z]+(-[a-z]+)*$")
        (True, True, True)
        >>> risky_pattern("^[A-Z]{3}$"), risky_pattern(r"^\\d+(\\.\\d+)?$")
        (False, False)
    """
    if not isinstance(pattern, str):
        return False
    try:
        from re import _constants as c  # type: ignore[attr-defined]
        from re import _parser as parser  # type: ignore[attr-defined]
    except ImportError:  # another Python's layout: treat every pattern as risky on long strings
        return True
    try:
        tree = parser.parse(pattern)
    except (re.error, RecursionError, OverflowError):
        return False  # jsonschema reports a broken pattern itself

    def nested(items: Any, inside: bool) -> bool:
        for op, av in items:
            if op in (c.MAX_REPEAT, c.MIN_REPEAT):
                unbounded = av[1] == c.MAXREPEAT or av[1] > 64
                if unbounded and inside:
                    return True
                if nested(av[2], inside or unbounded):
                    return True
            elif op is c.SUBPATTERN:
                if nested(av[3], inside):
                    return True
            elif op is c.BRANCH:
                if inside and len(av[1]) > 1:
                    return True
                if any(nested(alt, inside) for alt in av[1]):
                    return True
            elif op in (c.ASSERT, c.ASSERT_NOT):
                if nested(av[1], inside):
                    return True
            elif op is c.ATOMIC_GROUP:  # no backtracking into it
                continue
        return False

    return nested(tree, False)


def _proto_keys(value: Any, where: str, depth: int) -> list[str]:
    """Where ``value`` holds a ``__proto__`` key."""
    if depth > 64:
        return []
    if isinstance(value, dict):
        here = [where] if "__proto__" in value else []
        return here + [x for k, v in value.items() for x in _proto_keys(v, f"{where}/{k}".lstrip("/"), depth + 1)]
    if isinstance(value, (list, tuple)):
        return [x for i, v in enumerate(value) for x in _proto_keys(v, f"{where}/{i}".lstrip("/"), depth + 1)]
    return []
