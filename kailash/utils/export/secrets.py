"""Secrets in an export: ``${ENV}`` references, generated variable names, and the leak check.

A secret reaches an export only as a reference to an environment variable. A secret
that came without a variable name gets one built from the node id and parameter
(``NODE_PARAM``), unique within the export. Before anything is written,
:func:`refuse_leaks` looks for the value of every known secret anywhere in the
document and refuses the export if one appears. Used by :mod:`kailash.utils.export`.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from kailash.errors import SerializationError
from kailash.security.secrets import Secret, is_credential_header, plain_secret_values, url_credentials
from kailash.workflow.graph import Workflow

__all__ = ["ENV_REF", "new_reference", "explicit_envs", "env_refs", "refuse_leaks", "credential_value"]

logger = logging.getLogger("kailash.utils.export")

ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_MIN_LEAK_CHECK = 6  # shorter secret values would match ordinary text by chance


def new_reference(node: str, path: list[str], names: dict[str, None], ntype: str) -> str:
    """A ``${NAME}`` reference for a secret with no variable name; NAME is new within ``names``."""
    base = re.sub(r"[^A-Z0-9]+", "_", "_".join([node, *path]).upper()).strip("_") or "SECRET"
    if base[0].isdigit():
        base = "SECRET_" + base
    name, n = base, 2
    while name in names:
        name, n = f"{base}_{n}", n + 1
    names[name] = None
    logger.warning(
        "node '%s' (%s): secret '%s' has no environment variable name; the export refers to ${%s}, "
        "set it where the workflow runs",
        node,
        ntype,
        ".".join(path),
        name,
    )
    return f"${{{name}}}"


def credential_value(path: list[str], value: str, secret_params: set[str]) -> bool:
    """Whether config ``value`` at ``path`` is a credential though not declared secret: a URL
    with a password or a credential query parameter, or a literal (not ``{templated}``)
    header whose name marks a credential or that the node lists in ``secret_headers``."""
    if url_credentials(value):
        return True
    if len(path) == 2 and path[0] in ("headers", "auth_headers") and "{" not in value:
        return is_credential_header(path[1]) or path[1].lower() in secret_params
    return False


def explicit_envs(wf: Workflow) -> set[str]:
    """The environment variable names the workflow's secrets already carry (sub-workflows too)."""
    found: set[str] = set()

    def walk(v: Any) -> None:
        if isinstance(v, Secret):
            env: str | None = getattr(v, "env", None)
            if env:
                found.add(env)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, (list, tuple)):
            for x in v:
                walk(x)
        elif isinstance(v, Workflow):
            found.update(explicit_envs(v))

    for node in wf.nodes.values():
        walk(node.config)
    return found


def env_refs(value: Any) -> list[str]:
    """Every ``NAME`` of a ``${NAME}`` string in ``value`` (nested)."""
    if isinstance(value, str):
        m = ENV_REF.match(value)
        return [m.group(1)] if m else []
    if isinstance(value, dict):
        return [r for v in value.values() for r in env_refs(v)]
    if isinstance(value, list):
        return [r for v in value for r in env_refs(v)]
    return []


def refuse_leaks(wf: Workflow, doc: dict[str, Any]) -> None:
    """Refuse an export in which the value of a known secret appears anywhere."""
    raw: list[Any] = []

    def gather(w: Workflow) -> None:
        for node in w.nodes.values():
            cfg = node.config
            try:
                secret_params = {n for n, p in node.parameters.items() if p.secret}
            except Exception:
                secret_params = set()
            raw.append(cfg)
            raw.extend(Secret(v) for k, v in cfg.items() if k in secret_params and isinstance(v, str))
            for v in cfg.values():
                if isinstance(v, Workflow):
                    gather(v)

    gather(wf)
    values = [s for s in plain_secret_values(*raw) if len(s) >= _MIN_LEAK_CHECK and not ENV_REF.match(s)]
    if not values:
        return
    for where, text in _strings(doc, ""):
        for s in values:
            if s in text:
                node = where.split("'")[1] if where.startswith("node '") else None
                raise SerializationError(
                    f"cannot export workflow '{wf.name}': {where} contains the value of a secret; pass the "
                    "credential as a secret parameter or a Secret (it is then exported as an ${ENV} reference), "
                    "or a {placeholder} template filled at run time",
                    node_id=node,
                    parameter="config",
                )


def _strings(value: Any, where: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if isinstance(value, str):
        out.append((where or "the export", value))
    elif isinstance(value, dict):
        if "nodes" in value and "connections" in value and isinstance(value["nodes"], list):
            for n in value["nodes"]:
                if isinstance(n, dict):
                    for k, v in (n.get("config") or {}).items():
                        out += _strings(v, f"node '{n.get('id')}' config value '{k}'")
            for k, v in value.items():
                if k != "nodes":
                    out += _strings(v, f"'{k}'")
        else:
            for k, v in value.items():
                out += _strings(v, where or f"'{k}'")
    elif isinstance(value, list):
        for v in value:
            out += _strings(v, where)
    return out
