"""`kailash schedule ...` as a subprocess, against the same store the gateway reads."""

from __future__ import annotations

import json
import re

from test_cli import kailash

from kailash.runtime.schedule_store import SQLiteScheduleStore


def test_add_list_pause_resume_delete(tmp_path):
    home = tmp_path / "home"
    r = kailash("schedule", "add", "etl", "--cron", "*/5 * * * *", "--catchup", "all", "-p", "load.day=3",
                "--param", "mode=full", "--json", home=home)
    assert r.returncode == 0, r.stderr
    added = json.loads(r.stdout)
    assert (added["workflow"], added["cron"], added["catchup"], added["enabled"]) == ("etl", "*/5 * * * *", "all", True)
    assert added["parameters"] == {"load": {"day": 3}, "mode": "full"}
    r = kailash("schedule", "add", "report", "--every", "30s", "--tenant", "acme", home=home)
    assert r.returncode == 0 and re.match(r"added schedule s_[0-9a-f]{16}: workflow 'report'", r.stdout), r.stdout

    store = SQLiteScheduleStore(home / "schedules.db")  # what a gateway on this home would see
    assert [s.workflow for s in store.list()] == ["etl"]
    assert [s.every for s in store.list(tenant_id="acme")] == [30]

    listed = kailash("schedule", "list", home=home).stdout
    assert "etl" in listed and "report" not in listed and "cron '*/5 * * * *'" in listed
    assert "report" in kailash("schedule", "list", "--all", home=home).stdout
    acme_id = store.list(tenant_id="acme")[0].id

    r = kailash("schedule", "pause", acme_id, home=home)
    assert r.returncode == 0 and r.stdout.startswith(f"paused schedule {acme_id}")
    assert store.get(acme_id, tenant_id="acme").enabled is False
    r = kailash("schedule", "resume", acme_id, home=home)
    assert r.returncode == 0 and "next fire" in r.stdout
    assert store.get(acme_id, tenant_id="acme").next_fire_at is not None
    assert kailash("schedule", "fires", acme_id, home=home).stdout.strip() == "no fires yet"
    assert kailash("schedule", "delete", acme_id, home=home).returncode == 0
    assert store.list(any_tenant=True)[0].workflow == "etl"
    r = kailash("schedule", "delete", acme_id, home=home)
    assert r.returncode == 2 and f"no schedule '{acme_id}'" in r.stderr


def test_bad_input_names_the_field(tmp_path):
    r = kailash("schedule", "add", "etl", "--cron", "* * *", home=tmp_path)
    assert r.returncode == 2 and "cron expression '* * *' is not valid" in r.stderr
    r = kailash("schedule", "add", "etl", "--every", "soon", home=tmp_path)
    assert r.returncode == 2 and "interval 'soon' is not valid" in r.stderr
    r = kailash("schedule", "add", "etl", "--every", "5m", "--timezone", "Nowhere/Town", home=tmp_path)
    assert r.returncode == 2 and "unknown timezone 'Nowhere/Town'" in r.stderr
    r = kailash("schedule", "add", "etl", home=tmp_path)
    assert r.returncode == 2 and "one of the arguments --cron --every is required" in r.stderr
    assert kailash("schedule", "list", home=tmp_path).stdout.strip() == "no schedules"


def test_with_postgres_storage_the_cli_uses_the_registry_schema(tmp_path, monkeypatch):
    import uuid

    psycopg = __import__("pytest").importorskip("psycopg")
    url = "postgresql://postgres@127.0.0.1:5432/test"
    schema = "kcli_" + uuid.uuid4().hex[:10]
    monkeypatch.setenv("KAILASH_DATABASE_URL", url)
    monkeypatch.setenv("KAILASH_REGISTRY_SCHEMA", schema)
    try:
        r = kailash("schedule", "add", "etl", "--every", "5m", "--json", home=tmp_path)
        assert r.returncode == 0, r.stderr
        sid = json.loads(r.stdout)["id"]
        with psycopg.connect(url) as conn:
            assert conn.execute(f'SELECT workflow, every FROM "{schema}".schedules WHERE id = %s',
                                (sid,)).fetchone() == ("etl", 300)
        assert sid in kailash("schedule", "list", home=tmp_path).stdout
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_serve_no_schedules_turns_the_tick_off(monkeypatch):
    from kailash.api.gateway import WorkflowGateway
    from kailash.cli.main import main

    ticks = []
    monkeypatch.setattr(WorkflowGateway, "start", lambda self, **options: ticks.append(self.schedule_tick))
    assert main(["serve", "--no-tenants", "--port", "0", "--no-schedules"]) == 0
    assert main(["serve", "--no-tenants", "--port", "0"]) == 0
    assert ticks == [None, 1.0]
