"""``kailash serve FILE... [--port --host --trusted-proxy --cors-origin --queue-slots --on-interrupted]``: serve saved workflows with the gateway and the Studio.

Each file is loaded (safe YAML / JSON) and registered under its workflow name (or the
file's stem when two share a name). Tenants are served when the tenant registry has
any (or with ``--tenants``). Imports the gateway only when the command runs.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_subcommand", "cmd_serve"]


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


def cmd_serve(args: argparse.Namespace) -> int:
    from kailash.errors import KailashError
    from kailash.workflow.graph import Workflow

    try:
        from kailash.api.gateway import WorkflowGateway, require_fastapi

        require_fastapi()
    except ImportError as exc:
        _err(f"error: {exc}")
        return 3  # the environment: an extra is missing (exit codes: kailash.cli.main)
    loaded: dict[str, Any] = {}
    for file in args.files:
        try:
            wf = Workflow.load(file)
            wf.compile()
        except (KailashError, OSError) as exc:
            _err(f"error: {file}: {exc}")
            return 2
        name = wf.name if wf.name not in loaded and wf.name != "workflow" else Path(file).stem
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or Path(file).stem
        if slug != name:  # "Pricing Pipeline" is served at /workflows/Pricing-Pipeline
            _err(f"note: workflow '{name}' from {file} is served as '{slug}'")
            name = slug
        if name in loaded:
            _err(f"error: two workflows are named '{name}'; rename one")
            return 2
        loaded[name] = wf
    tenants = None
    if not args.no_tenants:
        from kailash.api.tenancy import TenantRegistry

        registry = TenantRegistry()
        if args.tenants or registry.has_tenants():
            tenants = registry
        elif hasattr(registry.storage, "close"):
            registry.storage.close()
    try:
        gateway = WorkflowGateway(port=args.port, host=args.host, tenants=tenants,
                                  max_body_size=args.max_body_mb * 1024 * 1024, log_level=args.log_level,
                                  trusted_proxies=args.trusted_proxy or None, cors_origins=args.cors_origin or None,
                                  schedule_tick=None if args.no_schedules else 1.0,
                                  queue=not args.no_queue, queue_slots=args.queue_slots,
                                  on_interrupted=args.on_interrupted or os.environ.get("KAILASH_ON_INTERRUPTED")
                                  or "resume", dask_address=args.dask or None)
    except (KailashError, ValueError) as exc:
        _err(f"error: {exc}")
        return 2
    if args.dask:
        try:  # reachable now, or one clear line (exit 3), not a failure at the first run
            gateway.runs.runtime_factory.connect()
        except ImportError as exc:
            _err(f"error: {exc}")
            return 3
        except KailashError as exc:
            _err(f"error: {exc}")
            return 3
        _err(f"runtime: DaskRuntime at {args.dask}")
    for name, wf in loaded.items():
        try:
            gateway.register_workflow(name, wf)
        except (KailashError, ValueError) as exc:
            _err(f"error: {exc}")
            return 2
    if args.requests_per_minute:
        from kailash.api.middleware import RateLimitingMiddleware

        gateway.add_middleware(RateLimitingMiddleware(requests_per_minute=args.requests_per_minute))
    try:  # bound before anything says it serves: a port in use is one clear error, not a banner then a failure
        sock = _listen(args.host, args.port)
    except OSError as exc:
        _err(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc} "
             "(another server on that port? choose another with --port, or --port 0 for any free one)")
        return 3  # the environment
    auth = gateway.authentication
    _err(f"Kailash gateway: {len(loaded)} workflow(s) [{', '.join(loaded) or 'none'}]"
         + (f", {len(tenants.list_tenants())} tenant(s)" if tenants else ""))
    host = f"[{args.host}]" if ":" in args.host else args.host
    where = f"http://{host}:{sock.getsockname()[1]}"
    _err(f"  Studio: {where}/studio   API docs: {where}/docs")
    if auth is not None:
        auth.prepare()  # resolve the keys now, so a generated key's location is shown before serving
        if auth.key_file is not None:
            _err(f"  API key: in {auth.key_file} (set KAILASH_API_KEYS to use your own)")
    try:
        gateway.start(sockets=[sock])  # on the socket bound above
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl+C it handled: a clean stop
        pass
    finally:
        if tenants is not None and hasattr(tenants.storage, "close"):
            tenants.storage.close()
    _err("gateway stopped")
    return 0


def _listen(host: str, port: int) -> Any:
    """A socket bound to ``host:port`` (as uvicorn binds: ``SO_REUSEADDR``), for the server to listen on."""
    import socket

    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                         flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def add_subcommand(subparsers: Any) -> None:
    p = subparsers.add_parser("serve", help="serve saved workflows over HTTP, with the Studio web UI")
    p.add_argument("files", nargs="*", metavar="FILE", help="saved workflows (.yaml/.json) to register")
    p.add_argument("--port", type=int, default=8000, help="TCP port (0: any free port; default 8000)")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--requests-per-minute", type=int, default=0, help="rate limit per caller (default: none)")
    p.add_argument("--max-body-mb", type=int, default=10, help="largest request body in MiB (default 10)")
    p.add_argument("--tenants", action="store_true", help="serve tenants even if none exist yet")
    p.add_argument("--no-tenants", action="store_true", help="do not serve tenants")
    p.add_argument("--trusted-proxy", action="append", default=[], metavar="ADDR",
                   help="address or network (10.0.0.0/8) of a reverse proxy whose X-Forwarded-For names the "
                        "client (repeatable; default: none, the connecting address is the client)")
    p.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                   help="an origin (https://app.example.com) whose pages may call the API from a browser "
                        "(repeatable; default: none)")
    p.add_argument("--no-schedules", action="store_true",
                   help="fire no schedules from this gateway (others on the same database still do)")
    p.add_argument("--queue-slots", type=int, default=8, metavar="N",
                   help="async runs executing in this gateway at once; more wait in the durable queue (default 8)")
    p.add_argument("--on-interrupted", choices=["resume", "mark"], default=None,
                   help="a queued run whose gateway died (lease expired, or its process gone on this host): resume "
                        "it, reusing the nodes it finished, or mark it interrupted (default: $KAILASH_ON_INTERRUPTED "
                        "or resume)")
    p.add_argument("--no-queue", action="store_true",
                   help="run async runs in memory instead of the durable queue (lost if the gateway stops)")
    p.add_argument("--dask", metavar="ADDRESS", default=os.environ.get("KAILASH_DASK_ADDRESS") or None,
                   help="run workflows on the Dask scheduler at ADDRESS (tcp://host:8786; "
                   "default: $KAILASH_DASK_ADDRESS)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=cmd_serve)
