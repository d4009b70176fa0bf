"""The ``kailash`` command line: run, resume, validate, nodes, runs (and the subcommands other parts add).

Each subcommand is a function taking the parsed arguments and returning an exit code:
0 success, 1 the workflow failed, 2 bad input. Heavy parts (the gateway, exporters)
are imported only by the subcommand that needs them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

__all__ = ["main", "build_parser"]


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _parameters(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if getattr(args, "params_file", None):
        from kailash.workflow.serialization import _safe_yaml_load

        with open(args.params_file, encoding="utf-8") as f:
            text = f.read()
        loaded = json.loads(text) if args.params_file.endswith(".json") else _safe_yaml_load(text)
        if not isinstance(loaded, dict):
            raise ValueError(f"parameters file '{args.params_file}' must hold a mapping")
        params.update(loaded)
    for item in getattr(args, "param", None) or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"-p expects node.param=value or name=value, got '{item}'")
        node_id, dot, name = key.partition(".")
        if dot:
            params.setdefault(node_id, {})[name] = _parse_value(value)
        else:
            params[key] = _parse_value(value)
    return params


class _Progress:
    """Live per-node progress on stderr (only when stderr is a terminal or --progress)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.done, self.enabled = total, 0, enabled
        self.t0 = time.perf_counter()
        self.streaming = False

    def end_line(self) -> None:
        """End the in-place stream progress line, if one is showing."""
        if self.streaming:
            sys.stderr.write("\n")
            self.streaming = False

    def __call__(self, event: dict[str, Any]) -> None:
        if not self.enabled:
            return
        kind = event["event"]
        if kind == "stream_progress":  # one line, rewritten in place
            sys.stderr.write(f"\r  ≋ {event['events']} events  {event['events_per_s']:,.1f} events/s  "
                             f"{event['failures']} failures  {event['dead_lettered']} dead-lettered ")
            sys.stderr.flush()
            self.streaming = True
            return
        if kind == "stream_started":
            sys.stderr.write(f"  ≋ streaming from '{event['source']}' (Ctrl-C stops after the event in flight)\n")
        elif kind == "node_started":
            sys.stderr.write(f"  ▶ {event['node_id']} ...\n")
        elif kind in ("node_completed", "node_skipped", "node_failed"):
            self.done += 1
            mark = {"node_completed": "✔", "node_skipped": "↷", "node_failed": "✘"}[kind]
            extra = f" {event.get('duration', 0) * 1000:.1f} ms" if kind == "node_completed" else ""
            sys.stderr.write(f"  {mark} [{self.done}/{self.total}] {event['node_id']}{extra}\n")
        sys.stderr.flush()


def _summarise(value: Any, limit: int = 200) -> str:
    try:
        text = json.dumps(value, default=repr)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def cmd_run(args: argparse.Namespace) -> int:
    from kailash.errors import KailashError
    from kailash.runtime import LocalRuntime
    from kailash.workflow.graph import Workflow

    try:
        wf = Workflow.load(args.file)
        params = _parameters(args)
    except (KailashError, ValueError, OSError) as exc:
        _err(f"error: {exc}")
        return 2
    progress = _Progress(len(wf.nodes), args.progress or sys.stderr.isatty())
    runtime = LocalRuntime(observers=[progress])
    stream: dict[str, Any] = {}
    if args.max_events is not None:
        stream["max_events"] = args.max_events
    if args.idle_timeout is not None:
        stream["timeout"] = args.idle_timeout
    if args.dead_letter:
        stream.update(on_event_error="dead_letter", dead_letter=args.dead_letter)
    t0 = time.perf_counter()
    try:
        results, run_id = runtime.execute(wf, parameters=params, stream=stream or None)
    except KailashError as exc:
        progress.end_line()
        _err(f"error: {exc}")
        if exc.run_id:
            _err(f"run {exc.run_id} recorded as failed; see `kailash runs {exc.run_id}`")
        return 2 if exc.run_id is None else 1
    elapsed = time.perf_counter() - t0
    progress.end_line()
    if args.json:
        from kailash.runtime.store import to_json_safe

        _out(json.dumps({"run_id": run_id, "status": "completed", "results": to_json_safe(dict(results))}, indent=2))
        return 0
    _out(f"workflow '{wf.name}' completed in {elapsed * 1000:.1f} ms (run {run_id})")
    summary = getattr(results, "stream", None)
    if summary is not None:
        _out(f"  stream stopped by {summary['stopped_by']}: {summary['events']} events, {summary['failures']} failures, "
             f"{summary['dead_lettered']} dead-lettered, {summary['events_per_s']:,.1f} events/s")
    for node_id in wf.nodes:
        if node_id in results:
            _out(f"  {node_id}: {_summarise(results[node_id])}")
        else:
            _out(f"  {node_id}: skipped")
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    """Resume a failed or interrupted run: finished nodes are reused, the rest run."""
    from kailash.errors import KailashError
    from kailash.runtime import LocalRuntime
    from kailash.workflow.graph import Workflow

    try:
        wf = Workflow.load(args.file)
        params = _parameters(args) if (args.param or args.params_file) else None
    except (KailashError, ValueError, OSError) as exc:
        _err(f"error: {exc}")
        return 2
    runtime = LocalRuntime(observers=[_Progress(len(wf.nodes), args.progress or sys.stderr.isatty())])
    try:
        results, run_id = runtime.resume(args.run_id, wf, parameters=params, rerun=args.rerun or None)
    except KailashError as exc:
        _err(f"error: {exc}")
        if exc.run_id:
            _err(f"run {exc.run_id} recorded as failed; see `kailash runs {exc.run_id}`")
        return 2 if exc.run_id is None else 1
    if args.json:
        from kailash.runtime.store import to_json_safe

        _out(json.dumps({"run_id": run_id, "resumed": args.run_id, "status": "completed",
                         "results": to_json_safe(dict(results))}, indent=2))
        return 0
    _out(f"workflow '{wf.name}' resumed from run {args.run_id} and completed (run {run_id})")
    for node_id in wf.nodes:
        _out(f"  {node_id}: {_summarise(results[node_id]) if node_id in results else 'skipped'}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from kailash.errors import KailashError
    from kailash.workflow.graph import Workflow

    try:
        wf = Workflow.load(args.file)
        plan = wf.compile()
    except KailashError as exc:
        _err(f"invalid: {exc}")
        return 1
    missing = [(s.id, n) for s in plan.steps for n in s.static_missing]
    _out(f"valid: workflow '{wf.name}' ({len(wf.nodes)} nodes, {len(wf.connections)} connections)")
    for node_id, name in missing:
        _out(f"  note: node '{node_id}' needs parameter '{name}' at run time (-p {node_id}.{name}=...)")
    return 0


def cmd_nodes(args: argparse.Namespace) -> int:
    from kailash.errors import KailashError
    from kailash.nodes.registry import describe_node, get_node_class, list_node_types, load_catalog

    if args.name:
        try:
            cls = get_node_class(args.name)
        except KailashError as exc:
            _err(f"error: {exc}")
            return 2
        info = describe_node(cls, args.name)
        if args.json:
            _out(json.dumps(info, indent=2))
            return 0
        _out(f"{info['name']}  ({info['category']})")
        _out(info["doc"] or "")
        _out("parameters:")
        for p in info["parameters"]:
            req = "required" if p["required"] else f"default {p['default']!r}"
            _out(f"  {p['name']}: {p['type']} ({req}) {p['description']}")
        return 0
    skipped = load_catalog()
    catalog = [describe_node(c, n) for n, c in list_node_types(include_custom=False).items()]
    if args.json:
        _out(json.dumps(catalog, indent=2))
        return 0
    by_cat: dict[str, list[dict[str, Any]]] = {}
    for info in catalog:
        by_cat.setdefault(info["category"], []).append(info)
    for cat in sorted(by_cat):
        _out(f"{cat}:")
        for info in by_cat[cat]:
            params = ", ".join(p["name"] + ("*" if p["required"] else "") for p in info["parameters"])
            _out(f"  {info['name']:<28} {params}")
    _out(f"{len(catalog)} node types (* = required). `kailash nodes NAME` for details.")
    for module, reason in skipped.items():
        _out(f"  (not loaded: {module}: {reason})")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from kailash.runtime.store import default_store

    store = default_store()
    if args.run_id:
        run = store.get_run(args.run_id)
        if run is None:
            _err(f"error: no run '{args.run_id}' in {store.path}")
            return 2
        if args.json:
            _out(json.dumps(run.to_dict(), indent=2, default=repr))
            return 0
        _out(f"run {run.run_id}  workflow '{run.workflow}'  {run.status}  "
             f"{(run.duration or 0) * 1000:.1f} ms  ({time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(run.started_at))})")
        if run.error:
            _out(f"  error at node '{run.error_node}': {run.error}")
        for n in run.nodes:
            dur = f"{n.duration * 1000:.2f} ms" if n.duration else ""
            _out(f"  {n.status:<9} {n.node_id:<24} {dur}" + (f"  {n.error}" if n.error else ""))
        return 0
    runs = store.list_runs(limit=args.limit, workflow=args.workflow, status=args.status)
    if args.json:
        _out(json.dumps([r.to_dict() for r in runs], indent=2, default=repr))
        return 0
    if not runs:
        _out(f"no runs recorded in {store.path}")
        return 0
    _out(f"{'run id':<34}{'workflow':<24}{'status':<11}{'nodes':>6}{'ms':>10}  started")
    for r in runs:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.started_at))
        _out(f"{r.run_id:<34}{r.workflow[:23]:<24}{r.status:<11}{len(r.nodes):>6}{(r.duration or 0) * 1000:>10.1f}  {started}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kailash", description="Build and run Kailash workflows.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run a saved workflow (.yaml/.json)")
    p.add_argument("file")
    p.add_argument("-p", "--param", action="append", metavar="NODE.PARAM=VALUE",
                   help="a parameter (value parsed as JSON when it is JSON); repeatable")
    p.add_argument("--params-file", help="parameters as YAML/JSON: {node_id: {param: value}}")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--progress", action="store_true", help="show per-node progress even when not on a terminal")
    p.add_argument("--max-events", type=int, help="stream runs: stop after this many events")
    p.add_argument("--idle-timeout", type=float, help="stream runs: stop after this many seconds without an event")
    p.add_argument("--dead-letter", metavar="FILE.jsonl",
                   help="stream runs: write failing events to this file and go on (default: the run fails)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("resume", help="resume a failed or interrupted run of a saved workflow")
    p.add_argument("run_id")
    p.add_argument("file")
    p.add_argument("-p", "--param", action="append", metavar="NODE.PARAM=VALUE",
                   help="parameters to use instead of the recorded ones; repeatable")
    p.add_argument("--params-file", help="parameters as YAML/JSON: {node_id: {param: value}}")
    p.add_argument("--rerun", action="append", metavar="NODE_ID", help="run this finished node again; repeatable")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--progress", action="store_true", help="show per-node progress even when not on a terminal")
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("validate", help="check a saved workflow without running it")
    p.add_argument("file")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("nodes", help="the node catalog, or one node's parameters")
    p.add_argument("name", nargs="?")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_nodes)

    p = sub.add_parser("runs", help="run history, or one run's details")
    p.add_argument("run_id", nargs="?")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--workflow")
    p.add_argument("--status", choices=["completed", "failed", "running", "interrupted"])
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_runs)

    from kailash.cli import extensions

    extensions.add_subcommands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except BrokenPipeError:  # `kailash nodes | head`: the reader left; exit quietly
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush does not fail again
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
