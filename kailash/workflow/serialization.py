"""Saving and loading workflows as YAML or JSON.

The format (``schema_version`` 1)::

    schema_version: 1
    name: etl
    description: ...
    nodes:
      - {id: reader, type: CSVReaderNode, config: {file_path: in.csv}}
    connections:
      - {from: reader, to: transformer}                      # default rule
      - {from: router, to: gold, output_key: gold}           # a port
      - {from: a, to: b, mapping: {result: data}}            # explicit mapping
    policies: {node_id: {...}}                               # optional

Loading never executes anything: YAML is read with the safe loader (with a cap on
aliases, against "billion laughs" files), node types must be registered, and secrets
are written as references (``${ENV_NAME}``) that loading resolves from the environment.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kailash.errors import KailashError, NodeConfigurationError, SerializationError
from kailash.nodes.base import Node
from kailash.nodes.capabilities import refuse_env_references
from kailash.security.secrets import Secret

if TYPE_CHECKING:
    from kailash.workflow.graph import Workflow

__all__ = ["SCHEMA_VERSION", "check_depth", "workflow_to_dict", "workflow_from_dict", "save_workflow", "load_workflow",
           "dumps", "loads", "workflow_from", "WORKFLOW_LOADER"]

SCHEMA_VERSION = 1
MAX_FILE_BYTES = 20 * 1024 * 1024
MAX_ALIASES = 100
MAX_EXPANDED_VALUES = 1_000_000
MAX_DEPTH = 200
_ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


def check_depth(value: Any, what: str, *, node_id: str | None = None) -> None:
    """Raise SerializationError when ``value`` nests dicts/lists more than ``MAX_DEPTH`` levels.

    Iterative, so a document nested 100,000 levels is refused instead of exhausting the
    interpreter's stack (everything after this check may recurse safely).
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    seen: set[int] = set()
    while stack:
        item, depth = stack.pop()
        if not isinstance(item, (dict, list, tuple)) or id(item) in seen:
            continue
        if depth >= MAX_DEPTH:
            raise SerializationError(
                f"{what} is nested too deeply (more than {MAX_DEPTH} levels); flatten it",
                node_id=node_id, expected=f"at most {MAX_DEPTH} levels of nesting",
            )
        seen.add(id(item))
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children)


def workflow_to_dict(workflow: Workflow) -> dict[str, Any]:
    nodes = []
    for node_id, node in workflow.nodes.items():
        check_depth(node.config, f"node '{node_id}': config", node_id=node_id)
        d = node.to_dict()
        nodes.append({"id": node_id, "type": d["type"], "config": _plain(d.get("config", {}), node_id)})
    out: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "name": workflow.name,
        "description": workflow.description,
        "version": workflow.version,
        "nodes": nodes,
        "connections": [c.to_dict() for c in workflow.connections],
    }
    if workflow.metadata:
        check_depth(workflow.metadata, "the workflow's metadata")
        out["metadata"] = _plain(workflow.metadata, "metadata")
    if workflow.policies:
        out["policies"] = {k: (v.to_dict() if hasattr(v, "to_dict") else v) for k, v in workflow.policies.items()}
    return out


def _plain(value: Any, where: str) -> Any:
    """Check ``value`` is plain data (what YAML/JSON can hold); secrets become references."""
    if isinstance(value, Secret):
        return value.to_reference()
    if isinstance(value, Node) and value.name:  # a node shared through config (an agent's cache)
        return {"node": value.name}
    if isinstance(value, dict):
        return {str(k): _plain(v, where) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, where) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise SerializationError(
        f"node '{where}': config value of type {type(value).__name__} cannot be saved as YAML/JSON; "
        "use plain values (str, numbers, lists, dicts) or pass it at run time",
        node_id=where, expected="plain data", got=type(value).__name__,
    )


def workflow_from_dict(data: dict[str, Any]) -> Workflow:
    from kailash.nodes.registry import get_node_class
    from kailash.workflow.graph import Workflow

    if not isinstance(data, dict):
        raise SerializationError(f"a workflow document must be a mapping, got {type(data).__name__}")
    check_depth(data, "the workflow document")
    version = data.get("schema_version", SCHEMA_VERSION)
    if not isinstance(version, int) or version > SCHEMA_VERSION or version < 1:
        raise SerializationError(
            f"workflow schema_version {version!r} is not supported by this Kailash "
            f"(supports 1..{SCHEMA_VERSION}); upgrade kailash to load it",
            parameter="schema_version", expected=f"1..{SCHEMA_VERSION}", got=version,
        )
    nodes = data.get("nodes") or []
    if isinstance(nodes, dict):  # {id: {type, config}} is accepted too
        nodes = [{"id": k, **v} if isinstance(v, dict) else v for k, v in nodes.items()]
    if not isinstance(nodes, list):
        raise SerializationError("'nodes' must be a list of {id, type, config}", parameter="nodes",
                                 expected="list", got=type(nodes).__name__)
    connections = data.get("connections") or []
    if not isinstance(connections, list):
        raise SerializationError("'connections' must be a list of {from, to}", parameter="connections",
                                 expected="list", got=type(connections).__name__)
    policies = data.get("policies")
    if policies is not None and not isinstance(policies, dict):
        raise SerializationError("'policies' must be a mapping of node id to policy", parameter="policies",
                                 expected="mapping", got=type(policies).__name__)
    wf = Workflow(
        name=str(data.get("name") or "workflow"),
        description=str(data.get("description") or ""),
        version=str(data.get("version") or "1.0.0"),
        metadata=data.get("metadata") if isinstance(data.get("metadata"), dict) else None,
    )
    problems = []
    for spec in nodes:  # a gateway tenant may not read the host's environment (kailash.nodes.capabilities)
        if isinstance(spec, dict):
            refuse_env_references(spec.get("config"), where=f"node '{spec.get('id')}': config",
                                  node_id=str(spec.get("id")), parameter="config")
    for i, spec in enumerate(nodes):
        if not isinstance(spec, dict) or "id" not in spec or "type" not in spec:
            problems.append(f"nodes[{i}] must be a mapping with 'id' and 'type'")
            continue
        if not isinstance(spec["id"], (str, int)) or isinstance(spec["id"], bool) or str(spec["id"]) == "":
            problems.append(f"nodes[{i}]: 'id' must be a non-empty string, got {spec['id']!r}")
            continue
        config = spec.get("config") or {}
        if not isinstance(config, dict):
            problems.append(f"node '{spec['id']}': config must be a mapping")
            continue
        try:
            cls = get_node_class(str(spec["type"]))
            wf.add_node(str(spec["id"]), cls(config=_resolve_env(config), name=str(spec["id"])))
        except KailashError as exc:
            problems.append(f"node '{spec['id']}': {exc}")
    for node in wf.nodes.values():  # {"node": id} in config means that node of this workflow
        for key, value in node.config.items():
            if isinstance(value, dict) and set(value) == {"node"} and value["node"] in wf.nodes:
                node.config[key] = wf.nodes[value["node"]]
    for i, c in enumerate(connections):
        if not isinstance(c, dict) or "from" not in c or "to" not in c:
            problems.append(f"connections[{i}] must be a mapping with 'from' and 'to'")
            continue
        mapping = c.get("mapping")
        port = c.get("output_key", c.get("port"))
        if mapping is not None and not (isinstance(mapping, dict)
                                        and all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items())):
            problems.append(f"connections[{i}]: 'mapping' must map output names to input names (strings)")
            continue
        if port is not None and not isinstance(port, str):
            problems.append(f"connections[{i}]: 'output_key' must be a string, got {type(port).__name__}")
            continue
        try:
            wf.connect(str(c["from"]), str(c["to"]), port, mapping=mapping)
        except KailashError as exc:
            problems.append(f"connections[{i}]: {exc}")
    if problems:
        raise SerializationError(
            "cannot load workflow:\n  - " + "\n  - ".join(problems), node_id=None, parameter="nodes"
        )
    if policies:
        from kailash.workflow import policies as policy_mod  # issue 3: failure policies

        for node_id, spec in policies.items():
            policy_mod.apply_policy_dict(wf, node_id, spec)
    return wf


def _resolve_env(value: Any) -> Any:
    if isinstance(value, str):
        m = _ENV_REF.match(value)
        if m:
            env = os.environ.get(m.group(1))
            return Secret(env, env=m.group(1)) if env is not None else value
        return value
    if isinstance(value, dict):
        return {k: _resolve_env(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_env(v) for v in value]
    return value


def _safe_yaml_load(text: str, source: str | None = None) -> Any:
    """Parse YAML text safely; errors name ``source`` (a file) instead of PyYAML's ``"<unicode string>"``."""
    import yaml

    class _Loader(yaml.SafeLoader):
        aliases = 0

        def compose_node(self, parent: Any, index: Any) -> Any:  # type: ignore[override]
            if self.check_event(yaml.AliasEvent):
                _Loader.aliases += 1
                if _Loader.aliases > MAX_ALIASES:
                    raise SerializationError(
                        f"YAML document uses more than {MAX_ALIASES} aliases; refusing it (possible alias bomb)"
                    )
            return super().compose_node(parent, index)

    fast = getattr(yaml, "CSafeLoader", None)  # libyaml: ~10x faster than the pure-Python loader
    try:
        if fast is not None:
            aliases = sum(1 for ev in yaml.parse(text, Loader=fast) if isinstance(ev, yaml.AliasEvent))
            if aliases > MAX_ALIASES:
                raise SerializationError(
                    f"YAML document uses more than {MAX_ALIASES} aliases; refusing it (possible alias bomb)"
                )
            data = yaml.load(text, Loader=fast)  # noqa: S506 - the safe C loader
        else:
            data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
            aliases = _Loader.aliases
    except yaml.YAMLError as exc:
        if "nesting depth" in str(exc):  # libyaml's own limit (1000 levels)
            raise SerializationError(f"YAML document is nested too deeply (more than {MAX_DEPTH} levels); refusing it") from None
        message = str(exc)
        if source is not None:
            message = message.replace('"<unicode string>"', f'"{source}"')
            if f'"{source}"' not in message:
                message += f'\n  in "{source}"'
        raise SerializationError(f"malformed or unsafe YAML: {message}") from None
    except RecursionError:
        raise SerializationError("YAML document is nested too deeply; refusing it") from None
    _check_expanded(data)  # depth always (the C loader does not recurse), size when aliases expand
    return data


def _check_expanded(data: Any) -> None:
    """Refuse alias structures that expand to a huge or recursive document.

    Fewer than ``MAX_ALIASES`` aliases can still nest into billions of values
    ("billion laughs"); everything that walks the document later (env references,
    validation, saving) would expand them, so the expanded size is counted here,
    once per shared object.
    """
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(value: Any, depth: int) -> int:
        if not isinstance(value, (dict, list)):
            return 1
        key = id(value)
        known = sizes.get(key)
        if known is not None:
            return known
        if key in active:
            raise SerializationError("YAML document contains a recursive alias; refusing it")
        if depth > MAX_DEPTH:
            raise SerializationError(f"YAML document is nested more than {MAX_DEPTH} levels; refusing it")
        active.add(key)
        items = [*value.keys(), *value.values()] if isinstance(value, dict) else value
        total = 1 + sum(size(v, depth + 1) for v in items)
        active.discard(key)
        if total > MAX_EXPANDED_VALUES:
            raise SerializationError(
                f"YAML document expands to more than {MAX_EXPANDED_VALUES:,} values through aliases; "
                "refusing it (possible alias bomb)"
            )
        sizes[key] = total
        return total

    size(data, 0)


def dumps(workflow: Workflow, format: str = "yaml") -> str:
    data = workflow_to_dict(workflow)
    if format == "json":
        return json.dumps(data, indent=2)
    if format in ("yaml", "yml"):
        import yaml

        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
        if any(c in text for c in "\x85\u2028\u2029"):  # PyYAML folds these into spaces unless escaped
            text = yaml.safe_dump(data, sort_keys=False, allow_unicode=False)
        return text
    raise SerializationError(f"unknown format '{format}'; expected 'yaml' or 'json'", parameter="format")


def loads(text: str, format: str | None = None, *, source: str | None = None) -> Workflow:
    """A workflow from YAML or JSON text; ``source`` (the file it came from) is named in parse errors."""
    if format == "json" or (format is None and text.lstrip().startswith("{")):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            where = f" in '{source}'" if source is not None else ""
            raise SerializationError(f"malformed JSON: {exc}{where}") from None
        except RecursionError:
            raise SerializationError(f"JSON document is nested too deeply (more than {MAX_DEPTH} levels); refusing it") from None
        check_depth(data, "the JSON document")
    else:
        data = _safe_yaml_load(text, source)
    return workflow_from_dict(data)


def _format_of(path: Path, format: str | None) -> str:
    if format:
        return "yaml" if format == "yml" else format
    return "json" if path.suffix.lower() == ".json" else "yaml"


def save_workflow(workflow: Workflow, path: str | os.PathLike[str], format: str | None = None) -> Path:
    from kailash.security.paths import safe_open

    p = Path(path)
    text = dumps(workflow, _format_of(p, format))
    if p.parent and not p.parent.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
    with safe_open(p, "w") as f:
        f.write(text)
    return p


def load_workflow(path: str | os.PathLike[str]) -> Workflow:
    from kailash.security.paths import safe_open

    p = Path(path)
    if not p.exists():
        raise SerializationError(f"workflow file '{path}' does not exist", parameter="path", got=str(path))
    try:
        with safe_open(p, "r") as f:
            text = f.read(MAX_FILE_BYTES + 1)  # measured on what is read, not on an earlier stat
    except KailashError:
        raise
    except UnicodeDecodeError as exc:
        raise SerializationError(f"workflow file '{path}' is not UTF-8 text (byte {exc.start}: "
                                 f"{exc.object[exc.start:exc.start + 1]!r}); save it as UTF-8",
                                 parameter="path", expected="UTF-8 text") from None
    except IsADirectoryError:
        raise SerializationError(f"workflow file '{path}' is a directory", parameter="path",
                                 expected="a YAML or JSON file") from None
    except OSError as exc:
        raise SerializationError(f"cannot read workflow file '{path}': {exc.strerror or exc}",
                                 parameter="path") from None
    if len(text) > MAX_FILE_BYTES:
        raise SerializationError(f"workflow file '{path}' is larger than {MAX_FILE_BYTES} bytes", parameter="path")
    fmt = "json" if p.suffix.lower() == ".json" else None
    return loads(text, fmt, source=str(path))


def workflow_from(source: Any, *, node_id: str | None = None) -> Workflow:
    """A workflow from ``source``: a workflow (returned as is), its dict form, or a saved file's path.

    The one loader behind ``ExecutionContext.load_workflow`` and the validation of nodes that
    contain workflows (``WorkflowNode``).

    Raises:
        NodeConfigurationError: the path does not exist (``node_id`` names the node that gave it).
        SerializationError: the dict or file does not describe a valid workflow.
    """
    from kailash.workflow.graph import Workflow

    if isinstance(source, Workflow):
        return source
    if isinstance(source, dict):
        return Workflow.from_dict(source)
    path = os.fspath(source) if isinstance(source, (str, os.PathLike)) else None
    if path is None:
        raise NodeConfigurationError(
            f"a workflow must be a Workflow, its dict form or a .yaml/.json path, got {type(source).__name__}",
            node_id=node_id, parameter="workflow", expected="Workflow | dict | path", got=type(source).__name__,
        )
    if not os.path.exists(path):
        raise NodeConfigurationError(f"workflow file '{path}' does not exist", node_id=node_id,
                                     parameter="workflow_path", expected="an existing .yaml/.json file", got=path)
    return Workflow.load(path)


class _Loader:
    """What validation hands nodes that contain workflows: loading, without running."""

    def load_workflow(self, source: Any) -> Workflow:
        return workflow_from(source)


WORKFLOW_LOADER = _Loader()
