"""Exporting a workflow for other environments: YAML/JSON files, a Docker image, Kubernetes.

:class:`WorkflowExporter` owns the export document (the saved format of
:mod:`kailash.workflow.serialization` plus the export's version, metadata and, on
request, dependencies) and writing it out. It refuses what would not work or would
leak elsewhere, before writing anything: a workflow that fails validation, a config
value that YAML/JSON cannot hold (naming the node and the value), a secret value
anywhere in the output. Secrets are written as ``${ENV_NAME}`` references; a secret
that came with no variable name gets one (``NODE_PARAM``), listed in the export.
The Docker build context and the Kubernetes manifests are built by the submodules
:mod:`~kailash.utils.export.docker` and :mod:`~kailash.utils.export.kubernetes`;
dependencies by :mod:`~kailash.utils.export.dependencies`; secret references and the
leak check live in :mod:`~kailash.utils.export.secrets`, options in
:mod:`~kailash.utils.export.options`, text and file writing in
:mod:`~kailash.utils.export.files`. This package never runs a workflow.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from kailash.errors import KailashError, SerializationError, WorkflowValidationError
from kailash.security.secrets import Secret, as_secret
from kailash.utils.export.dependencies import Dependencies, workflow_dependencies
from kailash.utils.export.files import dump_json, dump_yaml, write_files
from kailash.utils.export.kubernetes import slugify, validate_manifest
from kailash.utils.export.options import CONFIG_KEYS, check_config
from kailash.utils.export.secrets import (
    ENV_REF,
    credential_value,
    env_refs,
    explicit_envs,
    new_reference,
    refuse_leaks,
)
from kailash.workflow.graph import Workflow
from kailash.workflow.serialization import SCHEMA_VERSION

__all__ = ["WorkflowExporter", "Dependencies", "validate_kubernetes_manifests", "CONFIG_KEYS"]


class WorkflowExporter:
    """Export a workflow as YAML/JSON, a Docker build context or Kubernetes manifests.

    Args:
        workflow: the workflow to export.
        config: default export options for every method (see :data:`CONFIG_KEYS`); a
            method's own ``config`` is merged over them.

    Example:
        >>> import tempfile, os
        >>> from kailash.workflow import Workflow
        >>> from kailash.nodes.code.python import PythonCodeNode
        >>> wf = Workflow("doubler")
        >>> _ = wf.add_node("double", PythonCodeNode(code="result = x * 2"))
        >>> out = tempfile.mkdtemp()
        >>> path = WorkflowExporter(wf).to_yaml(os.path.join(out, "wf.yaml"), config={"version": "2.0.0"})
        >>> Workflow.load(path).version
        '2.0.0'
    """

    def __init__(self, workflow: Workflow, config: dict[str, Any] | None = None) -> None:
        if not isinstance(workflow, Workflow):
            raise SerializationError(
                f"WorkflowExporter expects a Workflow, got {type(workflow).__name__}",
                parameter="workflow",
                expected="Workflow",
                got=type(workflow).__name__,
            )
        self.workflow = workflow
        self.config = check_config(dict(config or {}))

    # -- the document ----------------------------------------------------------------------
    def to_dict(self, config: dict[str, Any] | None = None) -> dict[str, Any]:
        """The export document: what :meth:`to_yaml` and :meth:`to_json` write."""
        return self._document(self._merged(config))[0]

    def dependencies(self) -> Dependencies:
        """The Kailash extras, Python packages and node modules the workflow needs."""
        return workflow_dependencies(self.workflow)

    def _merged(self, config: dict[str, Any] | None) -> dict[str, Any]:
        return check_config({**self.config, **(config or {})})

    def _document(self, cfg: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        wf = self.workflow
        try:
            wf.validate()
        except WorkflowValidationError as exc:
            raise WorkflowValidationError(
                f"cannot export workflow '{wf.name}': {exc.message}",
                problems=exc.problems,
                node_id=exc.node_id,
                parameter=exc.parameter,
            ) from exc
        problems: list[str] = []
        names: dict[str, None] = dict.fromkeys(explicit_envs(wf))
        doc = _workflow_document(wf, problems, names, prefix="")
        doc["version"] = str(cfg.get("version") or wf.version)
        metadata = {**wf.metadata, **(cfg.get("metadata") or {})}
        if metadata:
            doc["metadata"] = metadata
            _find_unplain(metadata, "metadata", "", problems)
        if cfg.get("include_dependencies"):
            doc["dependencies"] = self.dependencies().to_dict()
        if problems:
            first = problems[0]
            raise SerializationError(
                f"cannot export workflow '{wf.name}' ({len(problems)} problem{'s' if len(problems) > 1 else ''}):\n  - "
                + "\n  - ".join(problems),
                node_id=first.split("'")[1] if first.startswith("node '") else None,
                parameter="config",
            )
        refuse_leaks(wf, doc)
        env_names = sorted(set(env_refs(doc["nodes"])))
        if env_names:
            doc["environment"] = env_names  # informational; Workflow.load resolves the references itself
        return doc, env_names

    # -- files -----------------------------------------------------------------------------
    def to_yaml(self, path: str | os.PathLike[str], config: dict[str, Any] | None = None) -> Path:
        """Write the workflow as YAML (loadable with ``Workflow.load``); returns the path."""
        doc, _ = self._document(self._merged(config))
        p = Path(path)
        write_files(p.parent, {p.name: (dump_yaml(doc), 0o644)})
        return p

    def to_json(self, path: str | os.PathLike[str], config: dict[str, Any] | None = None) -> Path:
        """Write the workflow as JSON (loadable with ``Workflow.load``); returns the path."""
        doc, _ = self._document(self._merged(config))
        p = Path(path)
        write_files(p.parent, {p.name: (dump_json(doc), 0o644)})
        return p

    def to_docker(self, directory: str | os.PathLike[str], config: dict[str, Any] | None = None) -> list[Path]:
        """Write a Docker build context: Dockerfile, entrypoint, requirements, workflow file.

        The image installs this SDK with the extras the workflow needs; its entrypoint
        runs ``kailash run`` with parameters from ``$KAILASH_PARAMS`` (JSON) or a file
        mounted at ``/params/params.json`` (``serve`` as argument runs ``kailash serve``).
        Returns the files written.
        """
        from kailash.utils.export.docker import docker_context

        cfg = self._merged({"include_dependencies": True, **(config or {})})
        deps = self._shippable_dependencies(with_dask=bool(cfg.get("dask_workers")))
        doc, env_names = self._document(cfg)
        fmt = cfg.get("format", "yaml")
        text = dump_json(doc) if fmt == "json" else dump_yaml(doc)
        files = docker_context(
            document_text=text,
            workflow_file=f"workflow.{fmt}",
            deps=deps,
            env_names=env_names,
            slug=slugify(self.workflow.name),
            cfg=cfg,
        )
        return write_files(Path(directory), files)

    def to_kubernetes(
        self, directory: str | os.PathLike[str], config: dict[str, Any] | None = None, *, serve: bool | None = None
    ) -> list[Path]:
        """Write Kubernetes manifests: a ConfigMap with the workflow and a Job running it once.

        With ``serve=True`` (or ``config={"serve": True}``) a Deployment and a Service run
        ``kailash serve`` instead. Secrets come from a Kubernetes Secret through
        ``secretKeyRef``; pods have resource requests and limits. Returns the files written.
        """
        from kailash.utils.export.kubernetes import kubernetes_manifests

        extra = dict(config or {})
        if serve is not None:
            extra["serve"] = serve
        cfg = self._merged({"include_dependencies": True, **extra})
        deps = self._shippable_dependencies(with_dask=bool(cfg.get("dask_workers")))
        doc, env_names = self._document(cfg)
        fmt = cfg.get("format", "yaml")
        text = dump_json(doc) if fmt == "json" else dump_yaml(doc)
        manifests = kubernetes_manifests(
            slug=slugify(self.workflow.name),
            document_text=text,
            workflow_file=f"workflow.{fmt}",
            env_names=env_names,
            deps=deps,
            cfg={**cfg, "version": doc["version"]},
        )
        files = {name: (m if isinstance(m, str) else dump_yaml(m), 0o644) for name, m in manifests.items()}
        return write_files(Path(directory), files)

    def _shippable_dependencies(self, *, with_dask: bool = False) -> Dependencies:
        deps = self.dependencies()
        if with_dask and "dask" not in deps.extras:  # the Dask scheduler and worker pods run the same image
            deps.extras = sorted([*deps.extras, "dask"])
        stuck = [c for c in deps.custom_nodes if not c.importable]
        if stuck:
            where = {c.node_type: c for c in stuck}
            nodes = [
                f"node '{nid}' ({type(n).__name__}, defined in {where[type(n).__name__].module})"
                for nid, n in self.workflow.nodes.items()
                if type(n).__name__ in where
            ]
            raise SerializationError(
                "cannot ship the workflow in a container: "
                + "; ".join(nodes or [c.node_type for c in stuck])
                + " — its class is defined in __main__ or inside a function, so the container cannot import it; "
                "move the class into a module (a .py file or an installed package)",
                node_id=next(iter(self.workflow.nodes), None),
                parameter="type",
            )
        return deps


# -- building the document ------------------------------------------------------------------


def _workflow_document(wf: Workflow, problems: list[str], names: dict[str, None], prefix: str) -> dict[str, Any]:
    nodes = []
    for node_id, node in wf.nodes.items():
        label = f"{prefix}{node_id}"
        try:
            d = node.to_dict()
        except KailashError as exc:
            problems.append(f"node '{label}' ({type(node).__name__}): {exc.message}")
            continue
        config = d.get("config") or {}
        try:
            secret_params = {n for n, p in node.parameters.items() if p.secret}
        except Exception:  # validation has already reported a node whose parameters fail
            secret_params = set()
        marked = node.config.get("secret_headers")  # header names the node declares credentials
        secret_params |= {h.lower() for h in marked if type(h) is str} if isinstance(marked, list) else set()
        config = _patch(node.config, config, [], label, type(node).__name__, secret_params, problems, names)
        nodes.append({"id": node_id, "type": d["type"], "config": config})
    out: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "name": wf.name,
        "description": wf.description,
        "version": wf.version,
        "nodes": nodes,
        "connections": [c.to_dict() for c in wf.connections],
    }
    if wf.metadata:
        out["metadata"] = dict(wf.metadata)
    if wf.policies:
        out["policies"] = {k: (v.to_dict() if hasattr(v, "to_dict") else v) for k, v in wf.policies.items()}
        _find_unplain(out["policies"], "policies", "", problems)
    return out


def _patch(
    raw: Any,
    doc: Any,
    path: list[str],
    node: str,
    ntype: str,
    secret_params: set[str],
    problems: list[str],
    names: dict[str, None],
) -> Any:
    """The node's saved config with every secret as a ``${ENV}`` reference, checked for plain data."""
    where = ".".join(path)
    if isinstance(raw, Workflow) and isinstance(doc, dict):
        return _workflow_document(raw, problems, names, prefix=f"{node}/")
    if isinstance(raw, Secret):
        env = getattr(raw, "env", None)
        if env:
            return f"${{{env}}}"
        return new_reference(node, path, names, ntype)
    if isinstance(raw, str) and raw and not ENV_REF.match(raw) and (
        (len(path) == 1 and path[0] in secret_params) or credential_value(path, raw, secret_params)
    ):
        env = as_secret(raw).env  # a value taken from the environment keeps its variable's name
        return f"${{{env}}}" if env else new_reference(node, path, names, ntype)
    if isinstance(doc, dict):
        out = {}
        for k, v in doc.items():
            if not isinstance(k, str):
                problems.append(
                    f"node '{node}' ({ntype}): config value '{where}' has the key {k!r} "
                    f"({type(k).__name__}); exported mappings keep string keys only"
                )
                continue
            sub = raw.get(k) if isinstance(raw, dict) else None
            out[k] = _patch(sub, v, [*path, k], node, ntype, secret_params, problems, names)
        return out
    if isinstance(doc, (list, tuple)):
        subs = list(raw) if isinstance(raw, (list, tuple)) and len(raw) == len(doc) else [None] * len(doc)
        return [
            _patch(r, v, [*path, str(i)], node, ntype, secret_params, problems, names)
            for i, (r, v) in enumerate(zip(subs, doc, strict=True))
        ]
    if doc is None or isinstance(doc, (str, int, float, bool)):
        return doc
    problems.append(
        f"node '{node}' ({ntype}): config value '{where}' is a {type(doc).__name__} object, which YAML/JSON "
        "cannot hold; use plain values (str, numbers, lists, dicts) or pass it at run time"
    )
    return None


def _find_unplain(value: Any, where: str, path: str, problems: list[str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _find_unplain(v, where, f"{path}.{k}" if path else str(k), problems)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _find_unplain(v, where, f"{path}[{i}]", problems)
    elif isinstance(value, Secret):
        problems.append(f"{where} '{path}' holds a secret; metadata is published with the export")
    elif not (value is None or isinstance(value, (str, int, float, bool))):
        problems.append(f"{where} '{path}' is a {type(value).__name__} object, which YAML/JSON cannot hold")


def validate_kubernetes_manifests(directory: str | os.PathLike[str]) -> dict[str, list[str]]:
    """Check every manifest written by :meth:`WorkflowExporter.to_kubernetes` in ``directory``.

    Returns ``{file name: problems}`` for the files with problems (empty when all are
    valid). Needs ``kubernetes-validate`` (``pip install 'kailash[k8s]'``; in ``[all]``).
    """
    from kailash.workflow.serialization import _safe_yaml_load

    out = {}
    for path in sorted(Path(directory).glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        problems = validate_manifest(_safe_yaml_load(path.read_text(encoding="utf-8")))
        if problems:
            out[path.name] = problems
    return out
