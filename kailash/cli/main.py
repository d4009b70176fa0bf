"""The ``kailash`` command line: run, resume, validate, nodes, runs (and the subcommands other parts add).

Each subcommand is a function taking the parsed arguments and returning an exit code.
The codes, the same for every subcommand (docs/cli.md):

- 0: done.
- 1: the workflow ran and failed, or a check found problems (``validate``, ``export --validate``).
- 2: bad input: usage, an unreadable or invalid file, a bad parameter.
- 3: the environment: an optional extra is not installed, ``KAILASH_HOME`` is unusable.
- 70: an internal error (a bug): one line, the traceback with ``KAILASH_DEBUG=1``.
- 130: interrupted (Ctrl-C).

:func:`main` turns every expected error into one line that says what to do. Heavy
parts (the gateway, exporters) are imported only by the subcommand that needs them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kailash.errors import KailashError

__all__ = ["main", "build_parser", "EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "EXIT_ENVIRONMENT", "EXIT_INTERNAL"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ENVIRONMENT, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 70, 130


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def _err(text: str) -> None:
    from kailash.cli.progress import paint, use_colour

    if text.startswith(("error:", "invalid:")):
        head, sep, rest = text.partition(":")
        text = paint(head + sep, "red", use_colour(sys.stderr)) + rest
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
        if args.params_file.endswith(".json"):
            try:
                loaded = json.loads(text)
            except ValueError as exc:
                raise ValueError(f"parameters file '{args.params_file}' is not valid JSON: {exc}") from None
        else:
            loaded = _safe_yaml_load(text, args.params_file)
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


def _progress(args: argparse.Namespace, total: int) -> Any:
    """The run's progress display: node lines on a terminal or with --progress, a live status on a terminal."""
    from kailash.cli.progress import RunProgress, StatusLine

    shown = bool(args.progress) or sys.stderr.isatty()
    return RunProgress(total, nodes=shown, status=StatusLine(every=2.0 if args.progress else None))


def _summarise(value: Any, limit: int = 200) -> str:
    """A one-line preview of ``value``, at most ``limit`` characters, built without serialising all of it."""
    parts: list[str] = []
    budget = [limit + 1]
    open_lists: list[int] = []  # lengths of the lists being walked (left open when the budget runs out)

    def put(text: str) -> bool:
        parts.append(text[: budget[0]])
        budget[0] -= len(text)
        return budget[0] > 0

    def walk(v: Any) -> bool:
        if isinstance(v, dict):
            if not put("{"):
                return False
            for i, (k, item) in enumerate(v.items()):
                if (i and not put(", ")) or not put(json.dumps(str(k)) + ": ") or not walk(item):
                    return False
            return put("}")
        if isinstance(v, (list, tuple)):
            open_lists.append(len(v))
            if not put("["):
                return False
            for i, item in enumerate(v):
                if (i and not put(", ")) or not walk(item):
                    return False
            open_lists.pop()
            return put("]")
        if isinstance(v, str):
            return put(json.dumps(v[:limit]))
        if v is None or isinstance(v, (bool, int, float)):
            return put(json.dumps(v))
        return put(repr(v)[:limit])

    complete = walk(value)
    text = "".join(parts)
    if complete and len(text) <= limit:
        return text
    size = f" (a list of {open_lists[0]:,})" if open_lists else ""
    return text[: max(0, limit - 3 - len(size))] + "..." + size


def _failure_json(exc: BaseException, run_id: str | None, code: int) -> None:
    error: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc)}
    for key in ("node_id", "parameter", "expected"):
        value = getattr(exc, key, None)
        if value is not None:
            error[key] = value if isinstance(value, (str, int, float, bool)) else str(value)
    _out(json.dumps({"run_id": run_id, "status": "failed" if run_id else "error", "exit_code": code,
                     "error": error}, indent=2))


def _error(args: argparse.Namespace, exc: BaseException, code: int, run_id: str | None = None) -> int:
    """Report ``exc`` (one ``error:`` line; the failure JSON with ``--json``) and return ``code``."""
    if args.json:
        _failure_json(exc, run_id, code)
    _err(f"error: {exc}")
    return code


def _failed(args: argparse.Namespace, runtime: Any, exc: KailashError) -> int:
    """Report a run (or resume) that raised ``exc``: exit 1 if a run was recorded (it failed), else 2."""
    code = _error(args, exc, EXIT_USAGE if exc.run_id is None else EXIT_FAILED, exc.run_id)
    if exc.run_id:
        _err(f"run {exc.run_id} recorded as failed{_ran(runtime, exc.run_id)}; see `kailash runs {exc.run_id}`")
    return code


def _completed(args: argparse.Namespace, wf: Any, runtime: Any, run_id: str, results: Any, elapsed: float,
               resumed: str | None = None) -> int:
    """Print a finished run (resumed from run ``resumed``): its recorded time and node count, each node's result."""
    if args.json:
        from kailash.runtime.store import to_json_safe

        head = {"run_id": run_id, **({"resumed": resumed} if resumed else {})}
        _out(json.dumps({**head, "status": "completed", "results": to_json_safe(dict(results))}, indent=2))
        return 0
    from kailash.cli.progress import format_elapsed, paint, use_colour

    done = paint("completed", "green", use_colour(sys.stdout))
    record = _recorded(runtime, run_id)
    if record is not None and record.duration is not None:
        elapsed = record.duration  # the one definition `kailash runs` shows
    count = f", {len(record.nodes)} nodes" if record is not None else ""
    how = f"resumed from run {resumed} and {done}" if resumed else done
    _out(f"workflow '{wf.name}' {how} in {format_elapsed(elapsed)}{count} (run {run_id})")
    summary = getattr(results, "stream", None)
    if summary is not None:
        _out(f"  stream stopped by {summary['stopped_by']}: {summary['events']} events, {summary['failures']} failures, "
             f"{summary['dead_lettered']} dead-lettered, {summary['events_per_s']:,.1f} events/s")
    for node_id in wf.nodes:
        _out(f"  {node_id}: {_summarise(results[node_id]) if node_id in results else 'skipped'}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from kailash.errors import KailashError
    from kailash.runtime import LocalRuntime
    from kailash.workflow.graph import Workflow

    try:
        wf = Workflow.load(args.file)
        params = _parameters(args)
    except (KailashError, ValueError, OSError) as exc:
        return _error(args, exc, EXIT_USAGE)
    progress = _progress(args, len(wf.nodes))
    stream: dict[str, Any] = {}
    if args.max_events is not None:
        stream["max_events"] = args.max_events
    if args.idle_timeout is not None:
        stream["timeout"] = args.idle_timeout
    if args.dead_letter:
        stream.update(on_event_error="dead_letter", dead_letter=args.dead_letter)
    address = args.dask or os.environ.get("KAILASH_DASK_ADDRESS") or None
    runtime: Any
    if address:
        if stream:
            _err("error: --max-events, --idle-timeout and --dead-letter need the local runtime; "
                 f"stream runs do not run on Dask (unset KAILASH_DASK_ADDRESS / --dask {address})")
            return EXIT_USAGE
        try:
            from kailash.runtime.distributed import DaskRuntime

            runtime = DaskRuntime(address=address, observers=[progress])
        except ImportError as exc:
            _err(f"error: {exc}")
            return EXIT_ENVIRONMENT
        except KailashError as exc:  # unreachable scheduler, or a malformed address
            return _error(args, exc, EXIT_ENVIRONMENT)
        _err(f"runtime: DaskRuntime at {address}")
    else:
        runtime = LocalRuntime(observers=[progress])  # the default: silent (errors stay one line)
    t0 = time.perf_counter()
    try:
        with progress:
            results, run_id = (runtime.execute(wf, parameters=params) if address
                               else runtime.execute(wf, parameters=params, stream=stream or None))
    except KailashError as exc:
        return _failed(args, runtime, exc)
    finally:
        if address:
            runtime.close()
    return _completed(args, wf, runtime, run_id, results, time.perf_counter() - t0)


def _recorded(runtime: Any, run_id: str) -> Any:
    """The run's record in ``runtime``'s store, or ``None``: what ``kailash runs`` shows."""
    store = getattr(runtime, "store", None)
    if store is None:
        return None
    try:
        return store.get_run(run_id)
    except Exception:
        return None


def _ran(runtime: Any, run_id: str) -> str:
    """`` after 4.9 ms (2 nodes)``: a failed run's recorded duration and node count, as ``kailash runs`` shows them."""
    from kailash.cli.progress import format_elapsed

    record = _recorded(runtime, run_id)
    if record is None or record.duration is None:
        return ""
    return f" after {format_elapsed(record.duration)} ({len(record.nodes)} nodes)"


def cmd_resume(args: argparse.Namespace) -> int:
    """Resume a failed or interrupted run: finished nodes are reused, the rest run."""
    from kailash.errors import KailashError
    from kailash.runtime import LocalRuntime
    from kailash.workflow.graph import Workflow

    try:
        wf = Workflow.load(args.file)
        params = _parameters(args) if (args.param or args.params_file) else None
    except (KailashError, ValueError, OSError) as exc:
        return _error(args, exc, EXIT_USAGE)
    progress = _progress(args, len(wf.nodes))
    runtime = LocalRuntime(observers=[progress])
    t0 = time.perf_counter()
    try:
        with progress:
            results, run_id = runtime.resume(args.run_id, wf, parameters=params, rerun=args.rerun or None)
    except KailashError as exc:
        return _failed(args, runtime, exc)
    return _completed(args, wf, runtime, run_id, results, time.perf_counter() - t0, resumed=args.run_id)


def cmd_validate(args: argparse.Namespace) -> int:
    from kailash.errors import KailashError
    from kailash.workflow.graph import Workflow

    try:
        wf = Workflow.load(args.file)
        plan = wf.compile()
        wf.validate()  # also: nodes whose optional dependency (an extra) is not installed
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
            allowed = []
            if p.get("choices") is not None:
                allowed.append("one of " + " | ".join(map(str, p["choices"])))
            if p.get("minimum") is not None:
                allowed.append(f">= {p['minimum']}")
            if p.get("maximum") is not None:
                allowed.append(f"<= {p['maximum']}")
            if p.get("format"):
                allowed.append(f"format {p['format']}")
            extra = f" [{', '.join(allowed)}]" if allowed else ""
            _out(f"  {p['name']}: {p['type']} ({req}){extra} {p['description']}")
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
        from kailash.cli.progress import format_elapsed, terminal_safe

        _out(f"run {run.run_id}  workflow '{run.workflow}'  {run.status}  {format_elapsed(run.duration or 0)}, "
             f"{len(run.nodes)} nodes  ({time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(run.started_at))})")
        if run.error:
            _out(terminal_safe(f"  error at node '{run.error_node}': {run.error}"))
        for n in run.nodes:
            dur = f"{n.duration * 1000:.2f} ms" if n.duration else ""
            _out(terminal_safe(f"  {n.status:<9} {n.node_id:<24} {dur}" + (f"  {n.error}" if n.error else "")))
        if run.calls:  # the agents' model and tool calls
            from kailash.cli.progress import describe_call

            _out(f"  calls ({len(run.calls) + run.calls_truncated}):")
            for call in run.calls:
                _out(f"    {'ok' if call.get('ok') else 'FAILED':<7}{str(call.get('node_id')):<24} {describe_call(call)}")
            if run.calls_truncated:
                _out(f"    [calls truncated: {run.calls_truncated} more not recorded]")
        for node_id, text in run.output.items():  # what each node printed and logged
            _out(f"  output of '{node_id}':")
            for line in text.splitlines():
                _out(f"    | {terminal_safe(line)}")
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
    if len(runs) >= args.limit and hasattr(store, "count_runs"):
        total = store.count_runs(workflow=args.workflow, status=args.status)
        if total > len(runs):
            _out(f"showing the newest {len(runs)} of {total} runs; `--limit N` shows more")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kailash",
        description="Build and run Kailash workflows. Start with `kailash run FILE.yaml` "
        "(examples/ has some) or `kailash nodes` for the node catalog.",
        epilog="exit codes: 0 done, 1 the workflow failed (or a check found problems), 2 bad input, "
        "3 missing extra or unusable KAILASH_HOME, 70 internal error, 130 interrupted. "
        "KAILASH_DEBUG=1 prints tracebacks; NO_COLOR=1 turns colour off.",
    )
    parser.add_argument("--version", action="version", version=_version_text())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run a saved workflow (.yaml/.json)")
    p.add_argument("file")
    p.add_argument("-p", "--param", action="append", metavar="NODE.PARAM=VALUE",
                   help="a parameter (value parsed as JSON when it is JSON); repeatable")
    p.add_argument("--params-file", help="parameters as YAML/JSON: {node_id: {param: value}}")
    p.add_argument("--json", action="store_true",
                   help="print the results as JSON on stdout (on failure too: status, exit_code, error)")
    p.add_argument("--progress", action="store_true",
                   help="show per-node progress (and a status every 2 s) even when not on a terminal")
    p.add_argument("--max-events", type=int, help="stream runs: stop after this many events")
    p.add_argument("--idle-timeout", type=float, help="stream runs: stop after this many seconds without an event")
    p.add_argument("--dead-letter", metavar="FILE.jsonl",
                   help="stream runs: write failing events to this file and go on (default: the run fails)")
    p.add_argument("--dask", metavar="ADDRESS",
                   help="run the nodes on the Dask scheduler at ADDRESS (tcp://host:8786); "
                   "default: $KAILASH_DASK_ADDRESS, else in this process")
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


def _version_text() -> str:
    from kailash._version import __version__

    return f"kailash {__version__} (Python {sys.version.split()[0]})"


def _home_problem() -> str | None:
    """Why ``$KAILASH_HOME`` (or ~/.kailash) cannot hold the run store, if it cannot."""
    import os
    from pathlib import Path

    raw = os.environ.get("KAILASH_HOME")
    home = Path(raw) if raw else Path.home() / ".kailash"
    name = "KAILASH_HOME" if raw else "the default KAILASH_HOME"
    if home.exists() and not home.is_dir():
        return f"{name} '{home}' is a file, not a directory; point KAILASH_HOME at a directory (or remove the file)"
    parent = next((p for p in (home, *home.parents) if p.exists()), None)
    if parent is not None and not parent.is_dir():
        return f"{name} '{home}' is inside '{parent}', which is a file; point KAILASH_HOME at a directory"
    return None


# Subcommands that keep runs, tenants or workspaces under KAILASH_HOME.
_USES_HOME = {"run", "resume", "runs", "serve", "mcp", "tenant"}


def _expected_error(exc: BaseException) -> tuple[int, str] | None:
    """``(exit code, one line)`` for an error a user can fix; None for a bug."""
    from kailash.errors import KailashError

    if isinstance(exc, ImportError):
        text = str(exc)
        if "pip install" not in text:
            missing = getattr(exc, "name", None) or "a package"
            text = f"{text}: a Kailash extra is not installed ({missing}); pip install 'kailash[all]'"
        return EXIT_ENVIRONMENT, text
    if isinstance(exc, KailashError):
        return EXIT_USAGE, str(exc)
    if isinstance(exc, PermissionError):
        return EXIT_ENVIRONMENT, f"permission denied: '{exc.filename}'; check the file's owner and mode"
    if isinstance(exc, OSError) and exc.filename:
        return EXIT_USAGE, f"{exc.strerror or exc}: '{exc.filename}'"
    return None


def main(argv: list[str] | None = None) -> int:
    import os

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in _USES_HOME:
        problem = _home_problem()
        if problem:
            _err(f"error: {problem}")
            return EXIT_ENVIRONMENT
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        _err("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `kailash nodes | head`: the reader left; exit quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush does not fail again
        return EXIT_FAILED
    except Exception as exc:
        if os.environ.get("KAILASH_DEBUG"):
            raise
        expected = _expected_error(exc)
        if expected is not None:
            code, text = expected
        else:
            code = EXIT_INTERNAL
            text = (f"internal error: {type(exc).__name__}: {exc} (a bug in Kailash; "
                    "run again with KAILASH_DEBUG=1 for the traceback and report it)")
        if getattr(args, "json", False):
            _failure_json(exc, getattr(exc, "run_id", None), code)
        _err(text if text.startswith("internal error") else f"error: {text}")
        return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
