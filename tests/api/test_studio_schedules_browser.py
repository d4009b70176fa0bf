"""The Studio's Schedules panel in real headless Chromium against a real gateway: add, refuse, pause, delete."""

from __future__ import annotations

import httpx
import pytest
from gateway_test_helpers import SIMPLE_DOC
from test_studio_browser import KEY, browser, enter_key, page, served  # noqa: F401 - fixtures

pytestmark = pytest.mark.browser


def test_schedules_panel_adds_pauses_and_deletes(page, served):  # noqa: F811
    pg = page
    headers = {"X-API-Key": KEY}
    assert httpx.post(served.url + "/workflows", headers=headers,
                      json={"name": "hello", "workflow": SIMPLE_DOC}).status_code == 201
    enter_key(pg)
    pg.click("#btn-schedules")
    pg.wait_for_selector("#schedules-dialog[open]")
    pg.fill("#schedule-workflow", "hello")

    pg.fill("#schedule-when", "*/5 * * *")  # four fields: refused, naming the field
    pg.click("#schedule-add")
    pg.wait_for_function("() => document.querySelector('#schedule-error').textContent.startsWith('cron:')")
    pg.fill("#schedule-when", "soon")
    pg.click("#schedule-add")
    pg.wait_for_function("() => document.querySelector('#schedule-error').textContent.startsWith('every:')")

    pg.fill("#schedule-when", "*/5 * * * *")
    pg.fill("#schedule-params", '{"greet": {"who": "studio"}}')
    pg.select_option("#schedule-catchup", "latest")
    pg.click("#schedule-add")
    row = pg.wait_for_selector("#schedules-list tr[data-schedule]")
    assert "cron */5 * * * *" in row.inner_text() and "latest" in row.inner_text()
    (stored,) = httpx.get(served.url + "/schedules", headers=headers).json()["schedules"]
    assert (stored["workflow"], stored["cron"], stored["catchup"], stored["parameters"]) == (
        "hello", "*/5 * * * *", "latest", {"greet": {"who": "studio"}})

    pg.click("#schedules-list tr[data-schedule] button[data-action='toggle']")
    pg.wait_for_selector("#schedules-list tr[data-enabled='false']")
    assert httpx.get(served.url + f"/schedules/{stored['id']}", headers=headers).json()["enabled"] is False

    pg.once("dialog", lambda d: d.accept())
    pg.click("#schedules-list tr[data-schedule] button[data-action='delete']")
    pg.wait_for_selector("#schedules-list tr[data-schedule]", state="detached")
    assert httpx.get(served.url + "/schedules", headers=headers).json()["schedules"] == []
