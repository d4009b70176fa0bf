"""``kailash schedule add|list|pause|resume|delete|fires``: manage the gateway's schedules.

Talks to the gateway's storage directly (PostgreSQL with ``KAILASH_DATABASE_URL``, else
SQLite under ``$KAILASH_HOME``), like ``kailash tenant``; a serving gateway picks the
changes up on its next tick. ``add`` does not check that the workflow exists (one
registered in a gateway's code is not in the storage): a fire of a missing workflow is
recorded as a failed run. ``--tenant`` acts in a tenant's namespace; ``list --all`` shows
every namespace's, and ``pause``/``resume``/``delete`` find a schedule in any namespace.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

__all__ = ["add_subcommand"]


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


def _guard(fn: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        from kailash.api.storage import open_storage
        from kailash.errors import KailashError

        storage = None
        try:
            storage = open_storage()
            return int(fn(args, storage.schedule_store()) or 0)
        except (KailashError, ValueError, ImportError) as exc:
            _err(f"error: {exc}")
            return 2
        except Exception as exc:  # a database that cannot be reached, say
            _err(f"error: {type(exc).__name__}: {exc}")
            return 2
        finally:
            if storage is not None and hasattr(storage, "close"):
                storage.close()

    return run


def _when(t: float | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _line(s: Any) -> str:
    timing = f"cron '{s.cron}'" + (f" {s.timezone}" if s.timezone != "UTC" else "") if s.cron else f"every {s.every}s"
    state = "enabled" if s.enabled else "paused"
    tenant = f"  tenant {s.tenant_id}" if s.tenant_id else ""
    return f"{s.id:<20}{s.workflow[:23]:<24}{timing:<26}{s.catchup:<8}{state:<9}{_when(s.next_fire_at)}{tenant}"


@_guard
def cmd_add(args: argparse.Namespace, store: Any) -> int:
    from kailash.cli.main import _parameters

    schedule = store.add(workflow=args.workflow, cron=args.cron, every=args.every, timezone=args.timezone,
                         parameters=_parameters(args), catchup=args.catchup, enabled=not args.paused,
                         tenant_id=args.tenant)
    if args.json:
        _out(json.dumps(schedule.to_dict(), indent=2))
        return 0
    _out(f"added schedule {schedule.id}: workflow '{schedule.workflow}', next fire {_when(schedule.next_fire_at)}")
    return 0


@_guard
def cmd_list(args: argparse.Namespace, store: Any) -> int:
    schedules = store.list(tenant_id=args.tenant, any_tenant=args.all)
    if args.json:
        _out(json.dumps([s.to_dict() for s in schedules], indent=2))
        return 0
    if not schedules:
        _out("no schedules")
        return 0
    _out(f"{'id':<20}{'workflow':<24}{'when':<26}{'catchup':<8}{'state':<9}next fire")
    for s in schedules:
        _out(_line(s))
    return 0


def _change(verb: str, **changes: Any) -> Any:
    @_guard
    def run(args: argparse.Namespace, store: Any) -> int:
        schedule = store.update(args.schedule_id, any_tenant=True, **changes)
        if schedule is None:
            _err(f"error: no schedule '{args.schedule_id}'")
            return 2
        _out(f"{verb} schedule {schedule.id}" + (f"; next fire {_when(schedule.next_fire_at)}"
                                                   if schedule.enabled else ""))
        return 0

    return run


@_guard
def cmd_delete(args: argparse.Namespace, store: Any) -> int:
    if not store.delete(args.schedule_id, any_tenant=True):
        _err(f"error: no schedule '{args.schedule_id}'")
        return 2
    _out(f"deleted schedule {args.schedule_id}")
    return 0


@_guard
def cmd_fires(args: argparse.Namespace, store: Any) -> int:
    if store.get(args.schedule_id, any_tenant=True) is None:
        _err(f"error: no schedule '{args.schedule_id}'")
        return 2
    fires = store.fires(args.schedule_id, limit=args.limit)
    if args.json:
        _out(json.dumps([f.to_dict() for f in fires], indent=2))
        return 0
    for f in fires:
        _out(f"{_when(f.fire_at)}  run {f.run_id}")
    if not fires:
        _out("no fires yet")
    return 0


def add_subcommand(subparsers: Any) -> None:
    p = subparsers.add_parser("schedule", help="run saved workflows on a cron expression or an interval")
    sub = p.add_subparsers(dest="schedule_command", required=True)

    a = sub.add_parser("add", help="schedule a workflow: --cron EXPR or --every INTERVAL")
    a.add_argument("workflow", help="the workflow's name in the gateway (uploaded or registered)")
    when = a.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron", help="a cron expression, e.g. '*/5 * * * *'")
    when.add_argument("--every", help="an interval: 30s, 5m, 2h, 1d (or seconds)")
    a.add_argument("--timezone", default="UTC", help="IANA timezone the cron expression is read in (default UTC)")
    a.add_argument("--catchup", choices=["skip", "latest", "all"], default="skip",
                   help="fires missed while no gateway ran: skip them (default), run the latest, or run all")
    a.add_argument("-p", "--param", action="append", metavar="NODE.PARAM=VALUE",
                   help="a run parameter (value parsed as JSON when it is JSON); repeatable")
    a.add_argument("--params-file", help="parameters as YAML/JSON: {node_id: {param: value}}")
    a.add_argument("--tenant", help="the tenant whose workflow it is (default: the gateway's own)")
    a.add_argument("--paused", action="store_true", help="add it paused")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_add)

    ls = sub.add_parser("list", help="list schedules")
    ls.add_argument("--tenant", help="a tenant's schedules (default: the gateway's own)")
    ls.add_argument("--all", action="store_true", help="every namespace's schedules")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)

    for verb, done, changes, text in (("pause", "paused", {"enabled": False}, "stop firing a schedule"),
                                      ("resume", "resumed", {"enabled": True},
                                       "fire a paused schedule again (from now: nothing missed is run)")):
        c = sub.add_parser(verb, help=text)
        c.add_argument("schedule_id")
        c.set_defaults(func=_change(done, **changes))

    d = sub.add_parser("delete", help="delete a schedule and its fire history")
    d.add_argument("schedule_id")
    d.set_defaults(func=cmd_delete)

    f = sub.add_parser("fires", help="a schedule's recent fires and their runs")
    f.add_argument("schedule_id")
    f.add_argument("--limit", type=int, default=20)
    f.add_argument("--json", action="store_true")
    f.set_defaults(func=cmd_fires)
