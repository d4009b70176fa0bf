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
