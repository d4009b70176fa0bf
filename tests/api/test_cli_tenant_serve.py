"""`kailash tenant ...` and `kailash serve` argument handling."""

from __future__ import annotations

import json

import pytest

from kailash.cli.main import main


def test_tenant_create_prints_key_once_then_list(capsys):
    assert main(["tenant", "create", "--tenant-id", "acme-corp", "--database-schema", "acme", "--redis-db", "2",
                 "--domain", "acme.studio.kailash.ai", "--max-concurrent-runs", "3"]) == 0
    out = capsys.readouterr().out
    key = out.split("api key: ")[1].split()[0]
    assert key.startswith("kt_")
    from kailash.api.tenancy import TenantRegistry

    assert TenantRegistry().authenticate_key(key).tenant_id == "acme-corp"
    assert main(["tenant", "list"]) == 0
    listing = capsys.readouterr().out
    assert "acme-corp" in listing and "acme.studio.kailash.ai" in listing and key not in listing
    assert main(["tenant", "list", "--json"]) == 0
    (tenant,) = json.loads(capsys.readouterr().out)
    assert tenant["redis_db"] == 2 and tenant["max_concurrent_runs"] == 3 and "api_key" not in tenant


def test_tenant_errors_exit_2(capsys):
    assert main(["tenant", "create", "--tenant-id", "x y"]) == 2
    assert "not valid" in capsys.readouterr().err
    assert main(["tenant", "create", "--tenant-id", "dup"]) == 0
    assert main(["tenant", "create", "--tenant-id", "dup"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["tenant", "rotate-key", "--tenant-id", "ghost"]) == 2
    assert main(["tenant", "delete", "--tenant-id", "ghost"]) == 2


def test_tenant_rotate_limits_delete(capsys):
    main(["tenant", "create", "--tenant-id", "t1", "--json"])
    first = json.loads(capsys.readouterr().out)["api_key"]
    assert main(["tenant", "rotate-key", "--tenant-id", "t1"]) == 0
    second = capsys.readouterr().out.split(": ")[1].split()[0]
    from kailash.api.tenancy import TenantRegistry

    registry = TenantRegistry()
    assert registry.authenticate_key(first) is None and registry.authenticate_key(second).tenant_id == "t1"
    assert main(["tenant", "set-limits", "--tenant-id", "t1", "--requests-per-minute", "120"]) == 0
    assert registry.get_tenant("t1").requests_per_minute == 120
    assert main(["tenant", "delete", "--tenant-id", "t1", "--purge"]) == 0
    assert registry.get_tenant("t1") is None


def test_serve_help_lists_options(capsys):
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    out = capsys.readouterr().out
    assert "--port" in out and "--host" in out and "FILE" in out


def test_serve_trusted_proxy_and_cors_origin_flags_reach_the_gateway(monkeypatch, capsys):
    """``--trusted-proxy`` makes the proxy's X-Forwarded-For name the client (one rate bucket each);
    ``--cors-origin`` lets that origin's pages call the API. Checked over a real socket."""
    import httpx

    from kailash.api.gateway import WorkflowGateway

    seen: dict[str, object] = {}

    def serve_briefly(self, **options):  # instead of blocking in uvicorn: serve, ask, stop
        running = self.serve_in_thread(log_level="warning")
        try:
            def get(client: str) -> int:
                return httpx.get(f"{running.url}/nodes/PythonCodeNode",
                                 headers={"X-Forwarded-For": client}).status_code

            seen["clients"] = [get(f"203.0.113.{i}") for i in range(4)]
            seen["same_client"] = [get("198.51.100.1") for _ in range(3)]
            preflight = httpx.options(f"{running.url}/workflows", headers={
                "Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"})
            seen["cors"] = preflight.headers.get("access-control-allow-origin")
            other = httpx.options(f"{running.url}/workflows", headers={
                "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
            seen["cors_other"] = other.headers.get("access-control-allow-origin")
        finally:
            running.stop()

    monkeypatch.setattr(WorkflowGateway, "start", serve_briefly)
    assert main(["serve", "--no-tenants", "--port", "0", "--requests-per-minute", "2",
                 "--trusted-proxy", "127.0.0.1", "--trusted-proxy", "10.0.0.0/8",
                 "--cors-origin", "https://app.example.com", "--cors-origin", "https://b.example.com"]) == 0
    assert seen["clients"] == [200, 200, 200, 200]  # four clients behind the proxy: four buckets
    assert seen["same_client"] == [200, 200, 429]
    assert seen["cors"] == "https://app.example.com"
    assert seen["cors_other"] is None


def test_serve_refuses_a_trusted_proxy_that_is_not_an_address(capsys):
    assert main(["serve", "--no-tenants", "--trusted-proxy", "proxy.example"]) == 2
    assert "trusted_proxies: 'proxy.example' is not an IP address or network" in capsys.readouterr().err
