"""Seed pattern 18 (Multi-Tenant Deployment): tenants created from the command line, served by one gateway.

The sample's ``./studio/deploy-tenant.sh --tenant-id acme-corp --domain ... --database-schema acme
--redis-db 2`` is ``kailash tenant create`` with the same options. Then a real ``kailash serve``
process serves both tenants, and the test checks what the sample promises: separate workflow
storage, separate run history, per-tenant limits and independent authentication — with
SQLite storage and with PostgreSQL (schema per tenant), and Redis for the counters.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
import yaml

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"
WORKFLOW = {
    "name": "orders",
    "nodes": [{"id": "count", "type": "PythonCodeNode", "config": {"code": "result = len(orders)"}}],
    "connections": [],
}


ROOT = Path(__file__).resolve().parents[2]


def kailash(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kailash.cli", *args], env=env, capture_output=True, text=True,
                          timeout=60)


def serve(env: dict[str, str]) -> tuple[subprocess.Popen[str], str, list[str]]:
    proc = subprocess.Popen([sys.executable, "-m", "kailash.cli", "serve", "--port", "0"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str] = queue.Queue()
    output: list[str] = []

    def pump() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            output.append(line)
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            m = re.search(r"running on (http://127\.0\.0\.1:\d+)", lines.get(timeout=0.5))
        except queue.Empty:
            continue
        if m:
            return proc, m.group(1), output
    proc.kill()
    raise AssertionError("gateway did not start:\n" + "".join(output))


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _backends():
    return ["sqlite", "postgres"]


@pytest.mark.parametrize("backend", _backends())
def test_pattern_18_multi_tenant_deployment(backend, tmp_path):
    redis = pytest.importorskip("redis")
    tag = uuid.uuid4().hex[:8]
    env = {**os.environ, "KAILASH_HOME": str(tmp_path / "home"), "KAILASH_REDIS_URL": REDIS_URL}
    env.pop("KAILASH_API_KEYS", None)
    schema, other_schema = "acme", "globex"
    if backend == "postgres":
        psycopg = pytest.importorskip("psycopg")
        try:
            psycopg.connect(PG_URL, connect_timeout=3).close()
        except Exception as exc:  # pragma: no cover - the machine's PostgreSQL is expected to be up
            pytest.skip(f"no PostgreSQL: {exc}")
        env.update(KAILASH_DATABASE_URL=PG_URL, KAILASH_REGISTRY_SCHEMA=f"kreg_{tag}")
        schema, other_schema = f"acme_{tag}", f"globex_{tag}"
    else:
        env.pop("KAILASH_DATABASE_URL", None)
    acme_counter = redis.Redis.from_url(REDIS_URL.replace("/0", "/2"))
    acme_counter.delete("kailash:tenant:acme-corp")
    proc = None
    try:
        # Deploy new tenant with isolated resources (the sample's options, plus a request limit)
        created = subprocess.run(
            ["./studio/deploy-tenant.sh", "--tenant-id", "acme-corp", "--domain", "acme.studio.kailash.ai",
             "--database-schema", schema, "--redis-db", "2", "--requests-per-minute", "1000"],
            env={**env, "KAILASH_PYTHON": sys.executable}, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert created.returncode == 0, created.stderr
        acme_key = re.search(r"api key: (\S+)", created.stdout).group(1)
        other = kailash(env, "tenant", "create", "--tenant-id", f"globex-{tag}", "--database-schema", other_schema,
                        "--requests-per-minute", "6", "--max-concurrent-runs", "1")
        assert other.returncode == 0, other.stderr
        globex_key = re.search(r"api key: (\S+)", other.stdout).group(1)
        listing = kailash(env, "tenant", "list")
        assert "acme-corp" in listing.stdout and "acme.studio.kailash.ai" in listing.stdout
        assert acme_key not in listing.stdout and globex_key not in listing.stdout

        proc, url, output = serve(env)
        # acme was created with --domain: it is served only under that host name (the proxy in front of
        # the gateway passes it on as the Host header), and that host name serves only acme
        acme = {"Authorization": f"Bearer {acme_key}", "Host": "acme.studio.kailash.ai"}
        globex = {"X-API-Key": globex_key}
        with httpx.Client(base_url=url, timeout=20) as http:
            # Independent authentication
            assert http.get("/workflows").status_code == 401
            assert http.get("/workflows", headers={"X-API-Key": acme_key[:-2] + "xx"}).status_code == 401
            assert http.get("/workflows", headers={"Authorization": f"Bearer {acme_key}"}).status_code == 421
            assert http.get("/workflows", headers={**globex, "Host": "acme.studio.kailash.ai"}).status_code == 421

            # Separate workflow storage per tenant (uploaded as a file, as the Studio imports)
            up = http.post("/api/workflows/import", files={"workflow": ("orders.yaml", yaml.safe_dump(WORKFLOW))},
                           headers=acme)
            assert up.status_code == 201, up.text
            run = http.post("/workflows/orders/execute", json={"parameters": {"count": {"orders": [1, 2, 3]}}},
                            headers=acme)
            assert run.json()["results"] == {"count": {"result": 3}}
            assert http.get("/workflows", headers=globex).json()["workflows"] == []
            assert http.get("/workflows/orders", headers=globex).status_code == 404
            assert http.post("/workflows/orders/execute", json={}, headers=globex).status_code == 404
            # ... and separate run history
            assert http.get(f"/runs/{run.json()['run_id']}", headers=globex).status_code == 404
            assert http.get("/runs", headers=globex).json()["runs"] == []
            assert len(http.get("/runs", headers=acme).json()["runs"]) == 1

            # Per-tenant resource limits: globex may make 6 requests a minute, acme far more
            codes = [http.get("/workflows", headers=globex).status_code for _ in range(6)]
            assert 429 in codes and codes.count(200) <= 3  # 3 were spent above
            limited = http.get("/workflows", headers=globex)
            assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
            assert all(http.get("/workflows", headers=acme).status_code == 200 for _ in range(10))
        assert acme_counter.exists("kailash:tenant:acme-corp")  # acme counts in its Redis database 2

        stop(proc)
        log = "".join(output)
        assert acme_key not in log and globex_key not in log

        if backend == "postgres":
            with psycopg.connect(PG_URL) as conn:
                assert conn.execute(f'SELECT name FROM "{schema}".workflows').fetchall() == [("orders",)]
                assert conn.execute(f'SELECT count(*) FROM "{other_schema}".workflows').fetchone() == (0,)
        else:
            home = tmp_path / "home" / "tenants"
            assert (home / schema / "workflows.db").exists() and (home / other_schema / "runs.db").exists()
    finally:
        if proc is not None:
            stop(proc)
        acme_counter.delete("kailash:tenant:acme-corp")
        redis.Redis.from_url(REDIS_URL).delete(f"kailash:tenant:globex-{tag}")
        if backend == "postgres":
            with psycopg.connect(PG_URL, autocommit=True) as conn:
                for s in (f"kreg_{tag}", schema, other_schema):
                    conn.execute(f'DROP SCHEMA IF EXISTS "{s}" CASCADE')
                for s in (schema, other_schema):  # the tenants' own database roles
                    conn.execute(f'DROP ROLE IF EXISTS "kt_{s}"')
