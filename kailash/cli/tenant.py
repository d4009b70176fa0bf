"""``kailash tenant create|list|rotate-key|set-limits|set-capabilities|delete``: manage gateway tenants.

``create`` prints the new tenant's API key once (only its digest is stored). Storage
is PostgreSQL with ``KAILASH_DATABASE_URL``, else SQLite under ``$KAILASH_HOME``; with
PostgreSQL, ``create`` also makes the tenant's own database role. ``--capabilities``,
``--grant`` and ``--revoke`` set what its nodes may touch (default: no host processes,
no host environment); ``--cpu-seconds``, ``--memory-limit`` and ``--run-timeout`` its
limits.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["add_subcommand"]


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


def _registry() -> Any:
    from kailash.api.tenancy import TenantRegistry

    return TenantRegistry()


def _guard(fn: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        from kailash.errors import KailashError

        try:
            return int(fn(args) or 0)
        except (KailashError, ValueError, ImportError) as exc:
            _err(f"error: {exc}")
            return 2
        except Exception as exc:  # a database that cannot be reached, say
            _err(f"error: {type(exc).__name__}: {exc}")
            return 2

    return run


def _names(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    return [n.strip() for v in values for n in v.split(",") if n.strip()]


@_guard
def cmd_create(args: argparse.Namespace) -> int:
    registry = _registry()
    tenant, key = registry.create_tenant(
        args.tenant_id, database_schema=args.database_schema, redis_db=args.redis_db, domain=args.domain,
        max_concurrent_runs=args.max_concurrent_runs, requests_per_minute=args.requests_per_minute,
        capabilities=_names(args.capabilities), grant=_names(args.grant), revoke=_names(args.revoke),
        cpu_seconds=args.cpu_seconds, memory_limit=args.memory_limit, run_timeout=args.run_timeout,
        database_role=args.database_role)
    if args.json:
        _out(json.dumps({**tenant.to_dict(), "api_key": key}, indent=2))
        return 0
    _out(f"created tenant '{tenant.tenant_id}' (storage: {registry.storage.describe()}, "
         f"schema '{tenant.database_schema}'" + (f", redis db {tenant.redis_db}" if tenant.redis_db is not None else "")
         + ")")
    _out(f"capabilities: {', '.join(sorted(tenant.capabilities)) or 'none'}"
         + (f"; PostgreSQL role '{tenant.database_role}'" if tenant.database_role else "")
         + (f"; served only at {tenant.domain}" if tenant.domain else ""))
    _out(f"api key: {key}")
    _out("  (shown only now: store it safely; `kailash tenant rotate-key` issues a new one)")
    return 0


@_guard
def cmd_list(args: argparse.Namespace) -> int:
    tenants = _registry().list_tenants()
    if args.json:
        _out(json.dumps([t.to_dict() for t in tenants], indent=2))
        return 0
    if not tenants:
        _out("no tenants")
        return 0
    _out(f"{'tenant':<24}{'schema':<24}{'redis db':>9}{'max runs':>10}{'req/min':>9}  {'domain':<24}capabilities")
    for t in tenants:
        def show(v: Any) -> str:
            return "-" if v is None else str(v)

        _out(f"{t.tenant_id:<24}{t.database_schema:<24}{show(t.redis_db):>9}{show(t.max_concurrent_runs):>10}"
             f"{show(t.requests_per_minute):>9}  {t.domain or '':<24}{','.join(sorted(t.capabilities))}")
    return 0


@_guard
def cmd_rotate(args: argparse.Namespace) -> int:
    key = _registry().rotate_key(args.tenant_id)
    _out(f"new api key for '{args.tenant_id}': {key}")
    _out("  (earlier keys are revoked; running gateways stop accepting them within 30 s)")
    return 0


_LIMITS = ("max_concurrent_runs", "requests_per_minute", "cpu_seconds", "memory_limit", "run_timeout")


@_guard
def cmd_limits(args: argparse.Namespace) -> int:
    registry = _registry()
    current = registry.require_tenant(args.tenant_id)
    given = {name: getattr(args, name) for name in _LIMITS}  # only the options given change; 0 removes one
    limits = {name: getattr(current, name) if value is None else (value or None) for name, value in given.items()}
    tenant = registry.set_limits(args.tenant_id, **limits)
    _out(f"tenant '{tenant.tenant_id}': max concurrent runs {tenant.max_concurrent_runs or 'unlimited'}, "
         f"requests per minute {tenant.requests_per_minute or 'unlimited'}, "
         f"CPU seconds per code call {tenant.cpu_seconds or 'the gateway default'}, "
         f"memory per code call {tenant.memory_limit or 'the gateway default'}, "
         f"run timeout {tenant.run_timeout or 'none'}")
    return 0


@_guard
def cmd_capabilities(args: argparse.Namespace) -> int:
    tenant = _registry().set_capabilities(args.tenant_id, capabilities=_names(args.capabilities),
                                          grant=_names(args.grant), revoke=_names(args.revoke))
    _out(f"tenant '{tenant.tenant_id}': capabilities {', '.join(sorted(tenant.capabilities)) or 'none'}")
    return 0


@_guard
def cmd_role(args: argparse.Namespace) -> int:
    tenant = _registry().add_database_role(args.tenant_id, args.database_role)
    _out(f"tenant '{tenant.tenant_id}': PostgreSQL role '{tenant.database_role}' (its SQL nodes now run as it)")
    return 0


def _policy_options(p: Any) -> None:
    from kailash.nodes.capabilities import CAPABILITIES, DEFAULT_TENANT_CAPABILITIES

    known = ", ".join(CAPABILITIES)
    p.add_argument("--capabilities", action="append", metavar="LIST",
                   help=f"exactly these capabilities, comma-separated (of: {known}; default "
                        f"{','.join(sorted(DEFAULT_TENANT_CAPABILITIES))})")
    p.add_argument("--grant", action="append", metavar="CAP", help="add a capability (repeatable), e.g. host_process")
    p.add_argument("--revoke", action="append", metavar="CAP", help="remove a capability (repeatable), e.g. network")


def _limit_options(p: Any) -> None:
    p.add_argument("--cpu-seconds", type=float, help="CPU seconds per sandboxed code call")
    p.add_argument("--memory-limit", type=int, help="bytes of memory per sandboxed code call")
    p.add_argument("--run-timeout", type=float, help="seconds a run may take before it is stopped")


@_guard
def cmd_delete(args: argparse.Namespace) -> int:
    if not _registry().delete_tenant(args.tenant_id, purge=args.purge):
        _err(f"error: no tenant '{args.tenant_id}'")
        return 2
    _out(f"deleted tenant '{args.tenant_id}'" + (" and its workflows and runs" if args.purge else ""))
    return 0


def add_subcommand(subparsers: Any) -> None:
    p = subparsers.add_parser("tenant", help="manage gateway tenants (keys, storage, limits)")
    sub = p.add_subparsers(dest="tenant_command", required=True)

    c = sub.add_parser("create", help="create a tenant and print its API key once")
    c.add_argument("--tenant-id", required=True)
    c.add_argument("--database-schema", help="storage schema (default t_<tenant id>)")
    c.add_argument("--redis-db", type=int, help="Redis database for the tenant's counters")
    c.add_argument("--domain", help="the only host name the tenant is served under (and that serves only it)")
    c.add_argument("--max-concurrent-runs", type=int)
    c.add_argument("--requests-per-minute", type=int)
    c.add_argument("--database-role", help="its PostgreSQL role (default kt_<schema>; PostgreSQL storage only)")
    _policy_options(c)
    _limit_options(c)
    c.add_argument("--json", action="store_true", help="print the tenant and key as JSON")
    c.set_defaults(func=cmd_create)

    ls = sub.add_parser("list", help="list tenants")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)

    r = sub.add_parser("rotate-key", help="revoke a tenant's keys and print a new one")
    r.add_argument("--tenant-id", required=True)
    r.set_defaults(func=cmd_rotate)

    s = sub.add_parser("set-limits", help="change a tenant's limits (options not given stay; 0 removes one)")
    s.add_argument("--tenant-id", required=True)
    s.add_argument("--max-concurrent-runs", type=int)
    s.add_argument("--requests-per-minute", type=int)
    _limit_options(s)
    s.set_defaults(func=cmd_limits)

    cap = sub.add_parser("set-capabilities", help="change what a tenant's nodes may touch on the host")
    cap.add_argument("--tenant-id", required=True)
    _policy_options(cap)
    cap.set_defaults(func=cmd_capabilities)

    role = sub.add_parser("add-database-role", help="give a tenant created earlier its own PostgreSQL role")
    role.add_argument("--tenant-id", required=True)
    role.add_argument("--database-role", help="the role's name (default kt_<schema>)")
    role.set_defaults(func=cmd_role)

    d = sub.add_parser("delete", help="delete a tenant (and with --purge its data)")
    d.add_argument("--tenant-id", required=True)
    d.add_argument("--purge", action="store_true")
    d.set_defaults(func=cmd_delete)
