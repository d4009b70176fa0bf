"""A real multi-tenant gateway for attack tests: uvicorn on 127.0.0.1, PostgreSQL storage.

Each use gets its own registry schema, tenant schemas and tenant roles (unique names),
dropped again afterwards.
"""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
GATEWAY_KEY = "gateway-operator-key-0123456789"


def postgres_or_skip() -> Any:
    psycopg = pytest.importorskip("psycopg")
    try:
        psycopg.connect(PG_URL, connect_timeout=3).close()
    except Exception as exc:  # pragma: no cover - the machine's PostgreSQL is expected to be up
        pytest.skip(f"no PostgreSQL at {PG_URL}: {exc}")
    return psycopg


@dataclass
class TenantGateway:
    """A served gateway, its registry and an HTTP client per tenant."""

    url: str
    registry: Any
    tag: str
    keys: dict[str, str] = field(default_factory=dict)
    gateway: Any = None

    def client(self, tenant: str | None, **headers: str) -> httpx.Client:
        key = GATEWAY_KEY if tenant is None else self.keys[tenant]
        return httpx.Client(base_url=self.url, headers={"X-API-Key": key, **headers}, timeout=60)

    def schema(self, tenant: str) -> str:
        return self.registry.require_tenant(tenant).database_schema

    def upload(self, tenant: str, name: str, nodes: list[dict[str, Any]], connections: list[Any] | None = None,
               ) -> httpx.Response:
        doc = {"name": name, "nodes": nodes, "connections": connections or []}
        with self.client(tenant) as http:
            return http.post("/workflows", json={"name": name, "workflow": doc})

    def run(self, tenant: str, name: str, parameters: dict[str, Any] | None = None) -> httpx.Response:
        with self.client(tenant) as http:
            return http.post(f"/workflows/{name}/execute", json={"parameters": parameters or {}})


@contextlib.contextmanager
def tenant_gateway(**tenants: dict[str, Any]) -> Iterator[TenantGateway]:
    """Serve a gateway with the given tenants (``name={create_tenant options}``) on PostgreSQL storage."""
    psycopg = postgres_or_skip()
    from kailash.api.gateway import WorkflowGateway
    from kailash.api.tenancy import TenantRegistry

    tag = uuid.uuid4().hex[:10]
    registry = TenantRegistry(database_url=PG_URL, registry_schema=f"kreg_{tag}")
    gw_schema = f"kdef_{tag}"
    running = None
    from kailash.api.postgres import PostgresStorage

    own = PostgresStorage(PG_URL, registry_schema=f"kreg_{tag}", default_schema=gw_schema, max_connections=2)
    try:
        keys = {}
        for name, options in tenants.items():
            _, keys[name] = registry.create_tenant(name, database_schema=f"{name.replace('-', '_')}_{tag}",
                                                   **options)
        gateway = WorkflowGateway(port=0, tenants=registry, api_keys=[GATEWAY_KEY], log_level="warning",
                                  storage=own)
        running = gateway.serve_in_thread()
        yield TenantGateway(url=running.url, registry=registry, tag=tag, keys=keys, gateway=gateway)
    finally:
        if running is not None:
            running.stop()
        tenants_now = registry.list_tenants()
        registry.storage.close()
        own.close()
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            for schema in [f"kreg_{tag}", gw_schema, *(t.database_schema for t in tenants_now)]:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            for t in tenants_now:
                if t.database_role:
                    conn.execute(f'DROP OWNED BY "{t.database_role}"')
                    conn.execute(f'DROP ROLE IF EXISTS "{t.database_role}"')


class _Recorder(BaseHTTPRequestHandler):
    seen: list[dict[str, str]]

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        self.server.seen.append(dict(self.headers.items()))  # type: ignore[attr-defined]
        body = json.dumps({"id": "x", "object": "chat.completion", "model": "m", "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}]}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST  # noqa: N815

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def recording_server() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """An HTTP server on 127.0.0.1 that answers like an OpenAI endpoint and records every request's headers."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.seen  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()
