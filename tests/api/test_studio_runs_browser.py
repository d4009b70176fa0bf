"""The Studio's Runs page, registered workflows and first-hour edges in real headless Chromium.

Against a real gateway on 127.0.0.1 serving workflows registered in code: run history with
filters and paging, a run's timeline, logs and outputs, re-run from the failed node
(POST /runs/{id}/resume), arranging a registered workflow then running it, save-as when
its graph changes, GET / for a browser, and the MCP servers view. Screenshots land in
``test-artifacts/`` (gitignored; CI keeps them as artifacts).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import httpx
import pytest
from test_studio_browser import ARTIFACTS, KEY, WAIT_MS, browser, enter_key, page  # noqa: F401 - fixtures

from kailash.nodes.base import Node, NodeParameter

pytestmark = pytest.mark.browser
H = {"X-API-Key": KEY}


class StudioFlakyCall(Node):
    """Prints what it does; fails while ``StudioFlakyCall.broken`` is set."""

    broken = True

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {"data": NodeParameter(default=None, description="what to send")}

    def run(self, data: Any) -> dict[str, Any]:
        print(f"calling the service with {data!r}")
        if StudioFlakyCall.broken:
            raise RuntimeError("the service is down")
        return {"result": f"sent {data}"}


class StudioLoad(Node):
    calls = 0

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {"n": NodeParameter(type=int, default=3, description="how many")}

    def run(self, n: int) -> dict[str, Any]:
        StudioLoad.calls += 1
        print(f"loaded {n} rows")
        return {"result": list(range(n))}


class StudioReport(Node):
    """Writes a report; every input comes at run time."""

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {
            "format": NodeParameter(type=str, required=True, choices=("csv", "json", "html"), description="file format"),
            "limit": NodeParameter(type=int, required=True, minimum=1, maximum=100, description="rows at most"),
            "title": NodeParameter(type=str, required=True, description="the heading"),
            "verbose": NodeParameter(type=bool, required=True, description="say more"),
            "extra": NodeParameter(type=dict, required=True, description="anything else"),
        }

    def run(self, format: str, limit: int, title: str, verbose: bool, extra: dict) -> dict[str, Any]:
        return {"result": {"format": format, "limit": limit, "title": title, "verbose": verbose, "extra": extra}}


def flaky_workflow():
    from kailash.workflow import Workflow

    wf = Workflow("flaky_pipeline", description="loads, then calls a service that may be down")
    wf.add_node("load", StudioLoad())
    wf.add_node("call", StudioFlakyCall())
    wf.connect("load", "call")
    return wf


def tiny_workflow():
    from kailash.nodes.code.python import PythonCodeNode
    from kailash.workflow import Workflow

    wf = Workflow("tiny")
    wf.add_node("one", PythonCodeNode(code="result = 1"))
    return wf


def report_workflow():
    from kailash.workflow import Workflow

    wf = Workflow("report")
    wf.add_node("report", StudioReport())
    return wf


@pytest.fixture
def served():
    from kailash.api.gateway import WorkflowGateway

    StudioFlakyCall.broken, StudioLoad.calls = True, 0
    gw = WorkflowGateway(port=0, api_keys=[KEY], log_level="warning")
    gw.register_workflow("flaky_pipeline", flaky_workflow())
    gw.register_workflow("tiny", tiny_workflow())
    gw.register_workflow("report", report_workflow())
    running = gw.serve_in_thread()
    yield running
    running.stop()


def shot(pg, name):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / name))


def test_runs_page_filters_pages_shows_timeline_and_reruns_from_the_failed_node(page, served):  # noqa: F811
    pg = page
    url = served.url
    for _ in range(27):  # more than a page of runs
        assert httpx.post(f"{url}/workflows/tiny/execute", headers=H, json={}).status_code == 200
    failed = httpx.post(f"{url}/workflows/flaky_pipeline/execute", headers=H,
                        json={"parameters": {"load": {"n": 4}}}).json()["run_id"]

    enter_key(pg)
    pg.click("#btn-runs")
    pg.wait_for_selector("#runs-dialog[open] #runs-list tr[data-run-id]")
    assert pg.locator("#runs-list tr[data-run-id]").count() == 25
    assert pg.locator("#runs-list tr[data-run-id]").first.get_attribute("data-run-id") == failed  # newest first
    pg.click("#runs-more")
    pg.wait_for_function("() => document.querySelectorAll('#runs-list tr[data-run-id]').length === 28")
    assert pg.is_hidden("#runs-more")

    pg.select_option("#runs-status", "failed")
    pg.wait_for_function("() => document.querySelectorAll('#runs-list tr[data-run-id]').length === 1")
    pg.fill("#runs-workflow", "tiny")
    pg.press("#runs-workflow", "Enter")
    pg.wait_for_selector("#runs-list td.muted")  # no failed runs of 'tiny'
    pg.fill("#runs-workflow", "flaky_pipeline")
    pg.press("#runs-workflow", "Enter")
    pg.wait_for_selector(f"#runs-list tr[data-run-id='{failed}']")
    shot(pg, "studio-runs-list.png")

    pg.click(f"#runs-list tr[data-run-id='{failed}']")
    pg.wait_for_selector(f"#run-detail[data-run-id='{failed}'][data-status='failed']")
    assert "Failed at 'call': " in pg.inner_text("#run-detail-error")
    assert "the service is down" in pg.inner_text("#run-detail-error")
    assert pg.get_attribute("#run-gantt .gantt-row[data-node-id='load']", "data-status") == "completed"
    assert pg.get_attribute("#run-gantt .gantt-row[data-node-id='call']", "data-status") == "failed"
    width = pg.eval_on_selector("#run-gantt .gantt-row[data-node-id='load'] .gantt-bar", "e => e.offsetWidth")
    assert width >= 3
    assert "loaded 4 rows" in pg.inner_text("#run-detail-nodes tr[data-node-id='load']")
    assert "calling the service with [0, 1, 2, 3]" in pg.inner_text("#run-detail-nodes tr[data-node-id='call']")
    assert pg.inner_text("#run-detail-resume") == "↻ Re-run from 'call'"
    shot(pg, "studio-run-detail-failed.png")

    StudioFlakyCall.broken = False
    pg.click("#run-detail-resume")
    pg.wait_for_selector("#run-detail[data-status='completed']")
    rerun = pg.get_attribute("#run-detail", "data-run-id")
    assert rerun != failed and pg.is_hidden("#run-detail-resume")
    assert '"sent [0, 1, 2, 3]"' in pg.inner_text("#run-detail-results")
    assert StudioLoad.calls == 1  # 'load' was reused from the failed run, not run again
    assert "re-run of" in pg.inner_text("#run-detail-head")
    shot(pg, "studio-run-detail-rerun.png")
    record = httpx.get(f"{url}/runs/{rerun}", headers=H).json()
    assert record["status"] == "completed" and record["parent_run_id"] == failed

    pg.click("#run-detail-head .parent-link")  # back to the run it re-ran
    pg.wait_for_selector(f"#run-detail[data-run-id='{failed}']")
    assert pg.evaluate("location.hash") == f"#runs/{failed}"

    # the address is a link to that run: a new tab with it opens the run's detail
    other = pg.context.new_page()
    other.goto(f"{url}/studio#runs/{failed}")
    other.wait_for_selector(f"#runs-dialog[open] #run-detail[data-run-id='{failed}'][data-status='failed']")
    other.close()

    # a workflow's runs, from the Open dialog
    pg.click("#runs-close")
    assert pg.evaluate("location.hash") == ""
    pg.click("#btn-open")
    pg.click("#open-list button[data-runs-of='tiny']")
    pg.wait_for_selector("#runs-dialog[open]")
    assert pg.input_value("#runs-workflow") == "tiny" and pg.evaluate("location.hash") == "#runs?workflow=tiny"
    pg.select_option("#runs-status", "")
    pg.wait_for_function("() => document.querySelectorAll('#runs-list tr[data-run-id]').length === 25")
    assert set(pg.eval_on_selector_all("#runs-list tr[data-run-id] td:nth-child(2)", "els => els.map(e => e.textContent)")) == {"tiny"}


def test_registered_workflow_opens_after_the_key_arranges_and_runs_and_edits_save_as(page, served):  # noqa: F811
    pg = page
    assert "$KAILASH_HOME/gateway_api_key" in pg.inner_text("#key-where")
    enter_key(pg)
    # the key opens the workflow the gateway serves
    pg.wait_for_selector(".node[data-node-id='call']")
    assert pg.input_value("#wf-title") == "flaky_pipeline"
    StudioFlakyCall.broken = False

    pg.click("#btn-arrange")  # layout only: the run goes ahead without saving
    box = pg.locator(".node[data-node-id='load'] .node-title").bounding_box()
    pg.mouse.move(box["x"] + 20, box["y"] + 8)
    pg.mouse.down()
    pg.mouse.move(box["x"] + 60, box["y"] + 120, steps=5)
    pg.mouse.up()
    pg.wait_for_selector("#save-state:has-text('unsaved')")
    pg.click("#btn-run")
    pg.click("#run-start")
    pg.wait_for_selector("#run-summary[data-run-status='completed']")
    assert pg.locator("#saveas-dialog[open]").count() == 0
    assert "registered in code" in pg.inner_text("#save-state")
    names = [w["name"] for w in httpx.get(f"{served.url}/workflows", headers=H).json()["workflows"]]
    assert sorted(names) == ["flaky_pipeline", "report", "tiny"]  # nothing uploaded
    shot(pg, "studio-registered-arranged-run.png")

    pg.click("#run-open-detail")  # the run panel's run, on the Runs page
    pg.wait_for_selector("#run-detail[data-status='completed']")
    pg.click("#runs-close")

    # a change of meaning: Save offers save-as, and the copy runs under its new name
    pg.click(".node[data-node-id='load'] .node-title")
    pg.fill("[data-param='n']", "5")
    pg.wait_for_selector("#validation[data-state='valid']")
    pg.click("#btn-save")
    pg.wait_for_selector("#saveas-dialog[open]")
    assert "registered in code" in pg.inner_text("#saveas-reason")
    assert pg.input_value("#saveas-name") == "flaky_pipeline_copy"
    shot(pg, "studio-save-as.png")
    pg.click("#saveas-save")
    pg.wait_for_selector("#save-state:has-text(\"saved to the server as 'flaky_pipeline_copy'\")")
    stored = httpx.get(f"{served.url}/workflows/flaky_pipeline_copy", headers=H).json()
    assert stored["source"] == "uploaded"
    assert pg.input_value("#wf-title") == "flaky_pipeline_copy"

    # layout kept in this browser: reopening the registered workflow puts 'load' where it was
    pos = pg.evaluate("() => { const n = window.kailashStudio.model.nodes.get('load'); return [n.x, n.y]; }")
    pg.click("#btn-open")
    pg.click("#open-list button[data-workflow='flaky_pipeline']")
    pg.wait_for_function("() => document.querySelector('#wf-title').value === 'flaky_pipeline'")
    assert pg.evaluate("() => { const n = window.kailashStudio.model.nodes.get('load'); return [n.x, n.y]; }") == pos


def test_run_dialog_form_is_generated_from_the_json_schema(page, served):  # noqa: F811
    pg = page
    enter_key(pg)
    pg.wait_for_selector(".node[data-node-id='call']")
    pg.click("#btn-open")
    pg.click("#open-list button[data-workflow='report']")
    pg.wait_for_selector(".node[data-node-id='report']")
    pg.wait_for_selector("#validation[data-state='valid']")
    pg.click("#btn-run")
    pg.wait_for_selector("#run-dialog[open] fieldset[data-node='report']")
    kinds = pg.eval_on_selector_all("#run-fields [data-param]", "els => els.map(e => [e.dataset.param, e.tagName, e.type])")
    assert kinds == [["format", "SELECT", "select-one"], ["limit", "INPUT", "number"], ["title", "INPUT", "text"],
                     ["verbose", "SELECT", "select-one"], ["extra", "TEXTAREA", "textarea"]]
    options = pg.eval_on_selector_all("[data-param='format'] option", "els => els.map(e => e.textContent)")
    assert options == ["— choose —", "csv", "json", "html"]
    assert (pg.get_attribute("[data-param='limit']", "min"), pg.get_attribute("[data-param='limit']", "max")) == ("1", "100")
    assert "≤ 100" in pg.inner_text("fieldset[data-node='report']")
    shot(pg, "studio-run-form.png")

    pg.select_option("[data-param='format']", label="json")
    pg.fill("[data-param='limit']", "500")  # past the maximum: refused here, naming node and parameter
    pg.fill("[data-param='title']", "Weekly")
    pg.select_option("[data-param='verbose']", label="false")
    pg.fill("[data-param='extra']", '{"by": "region"}')
    pg.click("#run-start")
    assert pg.inner_text("#run-error") == "report.limit: expected a whole number at least 1 and at most 100, got 500"
    pg.fill("[data-param='limit']", "20")
    pg.fill("[data-param='extra']", "{by")
    pg.click("#run-start")
    assert pg.inner_text("#run-error").startswith("report.extra: expected a JSON value")
    pg.fill("[data-param='extra']", '{"by": "region"}')
    pg.click("#run-start")
    pg.wait_for_selector("#run-summary[data-run-status='completed']")
    assert json.loads(pg.inner_text("#run-results")) == {"report": {"result": {
        "format": "json", "limit": 20, "title": "Weekly", "verbose": False, "extra": {"by": "region"}}}}
    pg.click("#btn-run")  # the values stay for the next run
    assert pg.input_value("[data-param='title']") == "Weekly"


def test_root_sends_a_browser_to_the_studio(browser, served):  # noqa: F811
    url = served.url
    api = httpx.get(url + "/", follow_redirects=False)
    assert api.status_code == 401  # an API client without a key: still the JSON refusal
    as_browser = httpx.get(url + "/", headers={"Accept": "text/html,application/xhtml+xml"}, follow_redirects=False)
    assert as_browser.status_code == 307 and as_browser.headers["location"] == "/studio"
    with_key = httpx.get(url + "/", headers=H)
    assert with_key.status_code == 200 and with_key.json()["studio"] == "/studio"
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        pg = context.new_page()
        pg.set_default_timeout(WAIT_MS)
        pg.goto(url + "/")
        pg.wait_for_selector("body[data-ready='1']")
        assert pg.url.endswith("/studio")
        assert pg.locator("#key-dialog[open]").count() == 1
        assert "gateway_api_key" in pg.inner_text("#key-dialog")
        shot(pg, "studio-root-redirect-key.png")
    finally:
        context.close()


@pytest.fixture
def mcp_served():
    pytest.importorskip("mcp")
    pytest.importorskip("mcp_server_time")
    from kailash.api.gateway import WorkflowGateway
    from kailash.nodes.mcp import unregister_mcp_server

    config = {"clock": {"command": sys.executable, "args": ["-m", "mcp_server_time"], "capabilities": ["time"]},
              "gone": {"command": "/nonexistent/kailash-mcp-server", "args": ["--token=tok-never-shown"]}}
    gw = WorkflowGateway(port=0, api_keys=[KEY], log_level="warning")
    gw.register_workflow("with_tools", tiny_workflow(), mcp_config=config)
    running = gw.serve_in_thread()
    yield running
    running.stop()
    for name in config:
        unregister_mcp_server(name)


def test_mcp_servers_view_lists_tools_and_reachability(browser, mcp_served):  # noqa: F811
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        pg = context.new_page()
        pg.set_default_timeout(30_000)
        pg.goto(mcp_served.url + "/studio")
        pg.wait_for_selector("body[data-ready='1']")
        enter_key(pg)
        pg.wait_for_selector("#btn-mcp:not([hidden])")
        assert pg.inner_text("#btn-mcp") == "MCP (2)"
        pg.click("#btn-mcp")
        pg.wait_for_selector(".mcp-server[data-server='clock'][data-reachable='true'] li[data-tool='get_current_time']")
        gone = pg.locator(".mcp-server[data-server='gone']")
        assert gone.get_attribute("data-reachable") == "false"
        assert "unreachable" in gone.inner_text() and "cannot start MCP server 'gone'" in gone.inner_text()
        assert "tok-never-shown" not in pg.content()
        shot(pg, "studio-mcp-servers.png")
    finally:
        context.close()


def test_running_an_edited_registered_workflow_saves_it_as_a_copy_first(page, served):  # noqa: F811
    pg = page
    enter_key(pg)
    pg.click("#btn-open")
    pg.click("#open-list button[data-workflow='tiny']")
    pg.wait_for_selector(".node[data-node-id='one']")
    pg.click(".node[data-node-id='one'] .node-title")
    pg.fill("[data-param='code']", "result = 41 + 1")
    pg.wait_for_selector("#validation[data-state='valid']")
    pg.click("#btn-run")
    pg.click("#run-start")
    pg.wait_for_selector("#saveas-dialog[open]")
    pg.fill("#saveas-name", "tiny answer")  # cleaned to a workflow name
    pg.click("#saveas-save")
    pg.wait_for_selector("#run-summary[data-run-status='completed']")
    assert json.loads(pg.inner_text("#run-results")) == {"one": {"result": 42}}
    assert pg.input_value("#wf-title") == "tiny_answer"
    runs = httpx.get(f"{served.url}/runs", headers=H, params={"workflow": "tiny_answer"}).json()["runs"]
    assert [r["status"] for r in runs] == ["completed"]
    assert httpx.get(f"{served.url}/runs", headers=H, params={"workflow": "tiny"}).json()["runs"] == []
