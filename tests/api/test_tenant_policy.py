"""A tenant's policy holds through the real gateway: its domain, its limits, its capabilities from the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import httpx
import pytest

from tests.security.tenant_gateway import GATEWAY_KEY, PG_URL, postgres_or_skip, tenant_gateway


def _code(code: str) -> list[dict]:
    return [{"id": "c", "type": "PythonCodeNode", "config": {"code": code}}]


def test_a_tenant_with_a_domain_is_served_only_there_and_its_domain_serves_only_it():
    with tenant_gateway(acme={"domain": "acme.example.com"}, globex={}) as gw:
        def get(key: str, host: str) -> int:
            return httpx.get(gw.url + "/workflows", headers={"X-API-Key": key, "Host": host}, timeout=20).status_code

        acme, globex = gw.keys["acme"], gw.keys["globex"]
        assert get(acme, "acme.example.com") == 200
        assert get(acme, "ACME.example.com:8443") == 200  # case and port do not matter
        assert get(acme, "127.0.0.1") == 421  # acme's key under another host name
        assert get(acme, "globex.example.com") == 421
        assert get(globex, "acme.example.com") == 421  # another tenant's key under acme's host name
        assert get(GATEWAY_KEY, "acme.example.com") == 421  # ... and the operator's own
        assert get(globex, "127.0.0.1") == 200 and get(GATEWAY_KEY, "127.0.0.1") == 200
        reply = httpx.get(gw.url + "/workflows", headers={"X-API-Key": globex, "Host": "acme.example.com"})
        assert reply.json()["error"]["code"] == "misdirected_request"
        assert httpx.get(gw.url + "/health", headers={"Host": "acme.example.com"}).status_code == 200


def test_tenant_domains_are_unique_and_valid(tmp_path):
    from kailash.api.tenancy import TenantError, TenantRegistry

    registry = TenantRegistry(home=tmp_path)
    registry.create_tenant("a", domain="Shop.Example.com.")
    assert registry.get_tenant("a").domain == "shop.example.com"
    with pytest.raises(TenantError, match="already served for another tenant"):
        registry.create_tenant("b", domain="shop.example.com")
    with pytest.raises(TenantError, match="not a valid host name"):
        registry.create_tenant("c", domain="bad host/")


def test_each_tenant_runs_under_its_own_sandbox_limits():
    with tenant_gateway(small={"memory_limit": 64 * 1024 * 1024, "cpu_seconds": 1.0}, roomy={}) as gw:
        hog = "x = bytearray(300 * 1024 * 1024)\nresult = len(x)"
        spin = "while True:\n    pass"
        for tenant in ("small", "roomy"):
            assert gw.upload(tenant, "hog", _code(hog)).status_code == 201
            assert gw.upload(tenant, "spin", _code(spin)).status_code == 201
        run = gw.run("small", "hog")
        assert run.status_code == 422 and "memory" in run.text.lower(), run.text
        assert gw.run("roomy", "hog").json()["results"] == {"c": {"result": 300 * 1024 * 1024}}
        started = time.monotonic()
        run = gw.run("small", "spin")
        assert run.status_code == 422 and time.monotonic() - started < 20, run.text
        assert _error_type(run) in ("NodeTimeoutError", "SecurityError", "NodeExecutionError"), run.text


def _error_type(reply: httpx.Response) -> str:
    return reply.json()["error"]["type"]


def test_a_tenants_run_timeout_stops_its_run():
    steps = [{"id": f"s{i}", "type": "PythonCodeNode", "config": {"code": "import time\ntime.sleep(0.4)\nresult = 1"}}
             for i in range(20)]
    chain = [{"from": f"s{i}", "to": f"s{i + 1}", "mapping": {"result": "data"}} for i in range(19)]
    with tenant_gateway(quick={"run_timeout": 1.5}, patient={}) as gw:
        for tenant in ("quick", "patient"):
            assert gw.upload(tenant, "slow", steps, chain).status_code == 201
        started = time.monotonic()
        run = gw.run("quick", "slow")
        took = time.monotonic() - started
        assert run.status_code == 422 and "run_timeout of 1.5 s" in run.text, run.text
        assert took < 8, took
        record = httpx.get(f"{gw.url}/runs/{run.json()['run_id']}", headers={"X-API-Key": gw.keys["quick"]}).json()
        assert record["status"] == "failed"


def test_concurrency_limit_is_per_tenant():
    slow = _code("import time\ntime.sleep(1.5)\nresult = 1")
    with tenant_gateway(single={"max_concurrent_runs": 1}, other={}) as gw:
        for tenant in ("single", "other"):
            assert gw.upload(tenant, "slow", slow).status_code == 201
        with gw.client("single") as http:
            first = http.post("/workflows/slow/execute?async=true", json={})
            second = http.post("/workflows/slow/execute?async=true", json={})
        assert first.status_code == 202 and second.status_code == 429, second.text
        assert second.json()["error"]["code"] == "too_many_runs"
        with gw.client("other") as http:  # another tenant is not held back by it
            assert [http.post("/workflows/slow/execute?async=true", json={}).status_code for _ in range(2)] == [202, 202]


def test_cli_creates_a_tenant_with_its_policy_and_role(tmp_path):
    psycopg = postgres_or_skip()
    tag = uuid.uuid4().hex[:8]
    env = {**os.environ, "KAILASH_HOME": str(tmp_path), "KAILASH_DATABASE_URL": PG_URL,
           "KAILASH_REGISTRY_SCHEMA": f"kreg_{tag}"}
    schema = f"cli_{tag}"

    def kailash(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "kailash.cli", "tenant", *args], env=env, capture_output=True,
                              text=True, timeout=60)

    try:
        made = kailash("create", "--tenant-id", "cli-co", "--database-schema", schema, "--grant", "host_process",
                       "--revoke", "network", "--cpu-seconds", "2", "--memory-limit", "100000000",
                       "--run-timeout", "30", "--domain", "cli.example.com")
        assert made.returncode == 0, made.stderr
        assert "capabilities: code, database, files, host_process" in made.stdout
        assert f"PostgreSQL role 'kt_{schema}'" in made.stdout
        listed = json.loads(kailash("list", "--json").stdout)[0]
        assert listed["capabilities"] == ["code", "database", "files", "host_process"]
        assert (listed["cpu_seconds"], listed["memory_limit"], listed["run_timeout"]) == (2.0, 100000000, 30.0)
        assert "password" not in json.dumps(listed)
        assert kailash("set-limits", "--tenant-id", "cli-co", "--run-timeout", "0", "--max-concurrent-runs",
                       "3").returncode == 0
        limited = json.loads(kailash("list", "--json").stdout)[0]  # only the options given changed
        assert (limited["cpu_seconds"], limited["run_timeout"], limited["max_concurrent_runs"]) == (2.0, None, 3)
        changed = kailash("set-capabilities", "--tenant-id", "cli-co", "--revoke", "host_process")
        assert changed.returncode == 0 and "host_process" not in changed.stdout, changed.stderr
        bad = kailash("set-capabilities", "--tenant-id", "cli-co", "--grant", "root")
        assert bad.returncode == 2 and "unknown capability 'root'" in bad.stderr
        with psycopg.connect(PG_URL) as conn:
            role = conn.execute("SELECT rolcanlogin, rolsuper, rolcreaterole, rolcreatedb FROM pg_roles "
                                "WHERE rolname = %s", (f"kt_{schema}",)).fetchone()
            assert role == (True, False, False, False)
            grants = conn.execute("SELECT has_schema_privilege(%s, %s, 'USAGE'), "
                                  "has_schema_privilege(%s, %s, 'USAGE')",
                                  (f"kt_{schema}", schema, f"kt_{schema}", f"kreg_{tag}")).fetchone()
            assert grants == (True, False)
        deleted = kailash("delete", "--tenant-id", "cli-co", "--purge")
        assert deleted.returncode == 0, deleted.stderr
        with psycopg.connect(PG_URL) as conn:
            assert conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (f"kt_{schema}",)).fetchone() is None
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            for s in (f"kreg_{tag}", schema):
                conn.execute(f'DROP SCHEMA IF EXISTS "{s}" CASCADE')
            conn.execute(f'DROP ROLE IF EXISTS "kt_{schema}"')


def test_a_policy_changed_by_another_process_applies_after_the_refresh_interval():
    from kailash.api.tenancy import TenantRegistry

    with tenant_gateway(acme={}) as gw:
        assert gw.upload("acme", "calc", _code("result = 3")).status_code == 201
        assert gw.run("acme", "calc").status_code == 200
        elsewhere = TenantRegistry(database_url=PG_URL, registry_schema=f"kreg_{gw.tag}")  # like the CLI
        try:
            elsewhere.set_capabilities("acme", revoke=["code"])
        finally:
            elsewhere.storage.close()
        assert gw.run("acme", "calc").status_code == 200  # this gateway has not re-read it yet
        gw.gateway.tenant_refresh = 0.0
        refused = gw.run("acme", "calc")
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "capability_refused", refused.text


def test_a_tenant_from_before_database_roles_gets_one():
    import dataclasses

    from kailash.api.tenancy import TenantError

    psycopg = postgres_or_skip()
    with tenant_gateway(old={}) as gw:
        registry = gw.registry
        tenant = registry.require_tenant("old")
        with psycopg.connect(PG_URL, autocommit=True) as conn:  # as a registry row written before roles existed
            conn.execute(f'DROP OWNED BY "{tenant.database_role}"')
            conn.execute(f'DROP ROLE "{tenant.database_role}"')
        registry._backend.update_policy("old", dataclasses.replace(tenant, database_role=None,
                                                                   database_password=None).policy())
        sql = [{"id": "q", "type": "SQLDatabaseNode", "config": {"connection_string": "postgresql://127.0.0.1/test",
                                                                 "query": "SELECT current_user AS who"}}]
        assert gw.upload("old", "who", sql).status_code == 201
        gw.gateway.tenant_refresh = 0.0
        refused = gw.run("old", "who")
        assert refused.status_code == 422 and "has no PostgreSQL role" in refused.text, refused.text
        again = registry.add_database_role("old")
        assert again.database_role == tenant.database_role
        assert gw.run("old", "who").json()["results"]["q"]["data"] == [{"who": tenant.database_role}]
        with pytest.raises(TenantError, match="already has the database role"):
            registry.add_database_role("old")


def test_a_tenant_run_without_a_scope_gets_the_safe_default(monkeypatch):
    from kailash.api.runs import tenant_security
    from kailash.errors import SecurityError
    from kailash.nodes.capabilities import current_tenant, require

    monkeypatch.setenv("HOST_ONLY", "x")
    with tenant_security("bare-tenant"):  # a caller that passes no workspace: restricted all the same
        assert current_tenant().capabilities == frozenset({"code", "database", "files", "network"})
        with pytest.raises(SecurityError, match="needs the 'host_process' capability"):
            require("host_process", who="test", what="starting a program")
    assert current_tenant() is None
