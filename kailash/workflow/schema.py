"""The JSON Schema of the workflow file format (YAML or JSON), for editors and CI.

:func:`workflow_schema` describes what :meth:`Workflow.load` accepts: the document keys,
nodes (a list of ``{id, type, config}`` or a mapping ``{id: {type, config}}``), connections
and policies. Each registered node type adds its config's properties (from
:meth:`NodeParameter.json_schema`: types, enums, ranges, formats), so an editor flags
``action: bogus`` or ``batch_size: -5`` while the file is typed. A config value may also be
an environment reference (``${NAME}``) or another node of the workflow (``{"node": id}``).

Write it with ``kailash schema > workflow.schema.json``; the gateway serves it at
``/schema/workflow.json``. Point YAML files at it with a first line
``# yaml-language-server: $schema=workflow.schema.json``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["workflow_schema", "SCHEMA_ID"]

SCHEMA_ID = "https://kailash.dev/schema/workflow.json"

_REFERENCE = {
    "anyOf": [
        {"type": "string", "pattern": r"^\$\{[A-Za-z_][A-Za-z0-9_]*\}$",
         "description": "an environment variable, read when the workflow is loaded"},
        {"type": "object", "properties": {"node": {"type": "string"}}, "required": ["node"],
         "additionalProperties": False, "description": "another node of this workflow"},
    ]
}


def _node_config_schema(cls: type, params: dict[str, Any]) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for name, p in params.items():
        schema = p.json_schema()
        if schema.keys() - {"description", "default", "writeOnly"}:  # typed: a reference is allowed too
            properties[name] = {"anyOf": [schema, {"$ref": "#/$defs/reference"}, {"type": "null"}]}
            if "description" in schema:
                properties[name]["description"] = schema["description"]
        else:
            properties[name] = schema
    out: dict[str, Any] = {"type": "object", "properties": properties}
    if not getattr(cls, "extra_inputs", False):
        out["additionalProperties"] = False
    return out


def workflow_schema(node_types: dict[str, type] | None = None) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a workflow document, with every registered node type.

    Example:
        >>> schema = workflow_schema()
        >>> schema["properties"]["schema_version"]["maximum"]
        1
        >>> "PythonCodeNode" in schema["$defs"]["node_type"]["enum"]
        True
    """
    from kailash.nodes.registry import list_node_types
    from kailash.workflow.policies import POLICY_KEYS
    from kailash.workflow.serialization import SCHEMA_VERSION

    types = node_types if node_types is not None else list_node_types()
    branches = []
    for name, cls in sorted(types.items()):
        try:
            params = cls().parameters
        except Exception:  # a node that cannot be built bare: its config is not described
            continue
        branches.append({
            "if": {"properties": {"type": {"const": name}}, "required": ["type"]},
            "then": {"properties": {"config": _node_config_schema(cls, params)}},
        })
    node_body = {
        "type": "object",
        "properties": {
            "type": {"$ref": "#/$defs/node_type"},
            "config": {"type": ["object", "null"]},
        },
        "required": ["type"],
        "allOf": branches,
    }
    node_item = {"allOf": [{"$ref": "#/$defs/node"}], "properties": {"id": {"type": "string", "minLength": 1}},
                 "required": ["id", "type"]}
    policy_options: dict[str, Any] = {
        "retries": {"type": "integer", "minimum": 0},
        "backoff": {"type": "number", "minimum": 0},
        "max_backoff": {"type": "number", "minimum": 0},
        "jitter": {"type": "boolean"},
        "timeout": {"type": ["number", "null"], "exclusiveMinimum": 0},
        "circuit_breaker": {"anyOf": [
            {"type": "integer", "minimum": 1},
            {"type": "object", "properties": {"failure_threshold": {"type": "integer", "minimum": 1},
                                              "reset_timeout": {"type": "number", "minimum": 0}},
             "additionalProperties": False},
            {"type": "null"}]},
        "cache_ttl": {"type": ["number", "null"], "minimum": 0},
    }
    assert set(policy_options) == set(POLICY_KEYS), "the policy schema must list every policy option"
    policy = {"type": "object", "properties": policy_options, "additionalProperties": False}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "Kailash workflow",
        "description": "A workflow saved by Workflow.save and read by Workflow.load / kailash run",
        "type": "object",
        "properties": {
            "schema_version": {"type": "integer", "minimum": 1, "maximum": SCHEMA_VERSION},
            "name": {"type": "string"},
            "description": {"type": "string"},
            "version": {"type": "string"},
            "metadata": {"type": "object"},
            "nodes": {  # a list of {id, type, config}, or a mapping {id: {type, config}}
                "type": ["array", "object"],
                "items": node_item,
                "additionalProperties": {"$ref": "#/$defs/node"},
            },
            "connections": {"type": "array", "items": {
                "type": "object",
                "properties": {
                    "from": {"type": "string"},
                    "to": {"type": "string"},
                    "output_key": {"type": ["string", "null"]},
                    "port": {"type": ["string", "null"]},
                    "mapping": {"type": ["object", "null"], "additionalProperties": {"type": "string"}},
                },
                "required": ["from", "to"],
                "additionalProperties": False,
            }},
            "policies": {"type": "object", "additionalProperties": policy},
        },
        "additionalProperties": False,
        "$defs": {
            "node_type": {"enum": sorted(types)},
            "node": node_body,
            "reference": _REFERENCE,
        },
    }
