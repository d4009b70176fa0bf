"""``kailash export FILE --to yaml|json|docker|kubernetes --out DIR``.

Loads a saved workflow and hands it to :class:`kailash.utils.export.WorkflowExporter`
(imported only when the command runs). Exit codes as for every subcommand (docs/cli.md): 0 done,
1 manifests invalid (--validate), 2 bad input (unreadable or invalid workflow, bad options,
unwritable target), 3 an extra is missing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_subcommand", "cmd_export"]

_SUFFIX = {"yaml": (".yaml", ".yml"), "json": (".json",)}


def add_subcommand(subparsers: Any) -> None:
    """Add ``export`` to the ``kailash`` command's subparsers."""
    p = subparsers.add_parser(
        "export",
        help="export a saved workflow as YAML/JSON, a Docker build context or Kubernetes manifests",
        description="Export a saved workflow. For yaml/json, --out is a file or a directory; for docker "
        "and kubernetes it is the directory the files are written to.",
    )
    p.add_argument("file", help="the saved workflow (.yaml/.json)")
    p.add_argument("--to", required=True, choices=["yaml", "json", "docker", "kubernetes"], dest="target")
    p.add_argument("--out", required=True, help="output file (yaml/json) or directory")
    p.add_argument("--set-version", dest="export_version", metavar="VERSION", help="the version to write")
    p.add_argument("--metadata", action="append", metavar="KEY=VALUE", help="metadata to add; repeatable")
    p.add_argument(
        "--include-dependencies",
        action="store_true",
        help="write the Kailash extras and Python packages the nodes need (always on for docker/kubernetes)",
    )
    p.add_argument("--format", choices=["yaml", "json"], help="docker/kubernetes: format of the workflow file")
    p.add_argument("--params-file", help="default run parameters (YAML/JSON) baked into the image or ConfigMap")
    p.add_argument(
        "--sdk",
        metavar="PATH|SPEC",
        help="docker: the Kailash to install in the image: a kailash wheel or source checkout to bundle, or a "
        "requirement to install from your index (default: a wheel built from the Kailash running this command; "
        "the name 'kailash' on the public index is another project)",
    )
    p.add_argument("--serve", action="store_true", help="kubernetes: a Deployment + Service running `kailash serve`")
    p.add_argument("--image", help="kubernetes: the image the pods run")
    p.add_argument("--namespace", help="kubernetes: the namespace")
    p.add_argument("--replicas", type=int, help="kubernetes: Deployment replicas (more than 1 needs "
                   "--database-url-secret)")
    p.add_argument("--database-url-secret", metavar="NAME",
                   help="kubernetes: the Secret whose KAILASH_DATABASE_URL is the PostgreSQL database the gateway "
                        "replicas share (runs and the run queue)")
    p.add_argument("--dask-workers", type=int, metavar="N",
                   help="kubernetes/docker: also a Dask scheduler and N worker pods on the same image "
                        "(the image gets the dask extra; pods get KAILASH_DASK_ADDRESS)")
    p.add_argument("--on-interrupted", choices=["resume", "mark"],
                   help="kubernetes: what a replica does with a queued run whose pod died (default resume)")
    p.add_argument(
        "--validate",
        action="store_true",
        help="kubernetes: check the manifests against the Kubernetes API schemas, offline (needs the [k8s] extra)",
    )
    p.set_defaults(func=cmd_export)


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


def _say_sdk(context: Path) -> None:
    """Tell which Kailash the image installs (the first comment of its requirements.txt)."""
    try:
        first = (context / "requirements.txt").read_text(encoding="utf-8").splitlines()[0]
    except (OSError, IndexError):
        return
    if first.startswith("# "):
        _err(first[2:])


def _config(args: argparse.Namespace) -> dict[str, Any]:
    cfg: dict[str, Any] = {}
    if args.export_version:
        cfg["version"] = args.export_version
    if args.metadata:
        meta = {}
        for item in args.metadata:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise ValueError(f"--metadata expects KEY=VALUE, got '{item}'")
            meta[key] = value
        cfg["metadata"] = meta
    if args.include_dependencies:
        cfg["include_dependencies"] = True
    if args.params_file:
        from kailash.cli.main import _parameters

        cfg["parameters"] = _parameters(argparse.Namespace(params_file=args.params_file, param=None))
    for key in ("format", "image", "namespace", "replicas", "sdk", "database_url_secret", "on_interrupted",
                "dask_workers"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    if args.serve:
        cfg["serve"] = True
    return cfg


def cmd_export(args: argparse.Namespace) -> int:
    """Run ``kailash export``; prints the files written."""
    from kailash.errors import KailashError
    from kailash.utils.export import WorkflowExporter, validate_kubernetes_manifests
    from kailash.workflow.graph import Workflow

    try:
        wf = Workflow.load(args.file)
        cfg = _config(args)
        exporter = WorkflowExporter(wf)
        if args.target in _SUFFIX:
            out = Path(args.out)
            if out.suffix.lower() not in _SUFFIX[args.target]:
                out = out / f"{Path(args.file).stem}{_SUFFIX[args.target][0]}"
            write = exporter.to_yaml if args.target == "yaml" else exporter.to_json
            written = [write(out, config=cfg)]
        elif args.target == "docker":
            written = exporter.to_docker(args.out, config=cfg)
            _say_sdk(Path(args.out))
        else:
            written = exporter.to_kubernetes(args.out, config=cfg)
    except (KailashError, ValueError, OSError, RuntimeError) as exc:
        _err(f"error: {exc}")
        return 2
    for path in written:
        sys.stdout.write(f"{path}\n")
    if args.validate and args.target == "kubernetes":
        try:
            problems = validate_kubernetes_manifests(args.out)
        except ImportError as exc:
            _err(f"error: {exc}")
            return 3  # the environment: an extra is missing (exit codes: kailash.cli.main)
        for name, items in problems.items():
            for p in items:
                _err(f"invalid: {name}: {p}")
        if problems:
            return 1
        sys.stdout.write("manifests valid against the Kubernetes API schemas\n")
    return 0
