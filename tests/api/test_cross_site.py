"""A web page on another origin must not drive a gateway, even one served without keys.

The attack: a developer runs ``WorkflowGateway(auth=False)`` on 127.0.0.1 and, in the same
browser, opens any web page. That page submits a form (multipart upload of a workflow, then a
``text/plain`` execute) and ``fetch(..., {mode: "no-cors"})`` calls at the gateway: the browser
sends them without asking the gateway (these are "simple" requests, no CORS preflight), and
before the fix the gateway stored the workflow and ran its code. A DNS-rebinding page (a name
resolving to 127.0.0.1) is same-origin as far as the browser knows, so only the gateway's
``Host`` check can refuse it. Real headless Chromium, real gateway, real attacker server.
"""

from __future__ import annotations

import http.server
import shutil
import threading
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
REBIND_HOST = "rebind.test"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 f"--host-resolver-rules=MAP {REBIND_HOST} 127.0.0.1"]
WAIT_MS = 20_000

ATTACK_PAGE = """<!doctype html>
<html><body>
<iframe name="sink1"></iframe><iframe name="sink2"></iframe>
<form id="upload" method="POST" action="GATEWAY/workflows" enctype="multipart/form-data" target="sink1">
  <input type="file" name="workflow" id="file">
  <input type="hidden" name="name" value="pwn_form">
</form>
<form id="execute" method="POST" action="GATEWAY/workflows/pwn_form/execute" enctype="text/plain" target="sink2">
  <input type="hidden" name='{"parameters": {"x": "' value='"}}'>
</form>
<script>
const doc = (name) => JSON.stringify({name, nodes: [{id: "evil", type: "PythonCodeNode",
  config: {code: "open(" + JSON.stringify(MARKER) + " + '-' + " + JSON.stringify(name) + ", 'w').write('ran')\\nresult = 1"}}],
  connections: []});
const MARKER = "MARKER_PATH";
function submitted(form, frame) {
  return new Promise((resolve) => {
    document.querySelector(`iframe[name=${frame}]`).addEventListener("load", resolve, {once: true});
    form.submit();
  });
}
async function attack() {
  // 1. a cross-site form upload (multipart, a file field), then a text/plain form execute
  const dt = new DataTransfer();
  dt.items.add(new File([doc("pwn_form")], "pwn.json", {type: "application/json"}));
  document.getElementById("file").files = dt.files;
  await submitted(document.getElementById("upload"), "sink1");
  await submitted(document.getElementById("execute"), "sink2");
  // 2. the same with fetch(no-cors): text/plain bodies, and a body with no content type at all
  const opts = (body) => ({method: "POST", mode: "no-cors", body});
  const attempts = [
    ["GATEWAY/workflows", opts(JSON.stringify({name: "pwn_fetch", workflow: JSON.parse(doc("pwn_fetch"))}))],
    ["GATEWAY/workflows/pwn_fetch/execute", opts("{}")],
    ["GATEWAY/workflows/registered/execute", opts(new TextEncoder().encode('{"parameters": {"x": 1}}'))],
    ["GATEWAY/workflows/registered/execute", {...opts('{"parameters": {"x": 2}}'), credentials: "include"}],
  ];
  for (const [url, init] of attempts) {
    try { await fetch(url, init); } catch (e) { /* an opaque failure is fine */ }
  }
  document.title = "attack-finished";
}
attack();
</script>
</body></html>
"""


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        pytest.skip("needs Debian's chromium (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (pip install playwright)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _registered_workflow(marker: Path):
    from kailash.nodes.code.python import PythonCodeNode
    from kailash.workflow import Workflow

    wf = Workflow("registered")
    wf.add_node("touch", PythonCodeNode(code=f"open({str(marker) + '-registered'!r}, 'w').write('ran')\nresult = x"))
    return wf


@pytest.fixture
def keyless_gateway(tmp_path):
    from kailash.api.gateway import WorkflowGateway

    marker = tmp_path / "ran"
    gw = WorkflowGateway(port=0, auth=False, log_level="warning")
    gw.register_workflow("registered", _registered_workflow(marker))
    running = gw.serve_in_thread()
    running.marker = marker  # type: ignore[attr-defined]
    yield running
    running.stop()


class _AttackerSite:
    """A plain HTTP server on another port: the page any site could serve."""

    def __init__(self, page: str) -> None:
        body = page.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _ran(marker: Path) -> list[str]:
    return sorted(p.name for p in marker.parent.glob(marker.name + "-*"))


@pytest.mark.parametrize("attacker_host", ["127.0.0.1", "localhost"], ids=["same-site-port", "cross-site"])
def test_a_page_on_another_origin_cannot_upload_or_run(browser, keyless_gateway, attacker_host):
    gw = keyless_gateway
    page_html = ATTACK_PAGE.replace("GATEWAY", gw.url).replace("MARKER_PATH", str(gw.marker))
    site = _AttackerSite(page_html)
    context = browser.new_context()
    try:
        pg = context.new_page()
        pg.set_default_timeout(WAIT_MS)
        pg.goto(f"http://{attacker_host}:{site.port}/")
        pg.wait_for_function("document.title === 'attack-finished'")
    finally:
        context.close()
        site.close()
    stored = httpx.get(gw.url + "/workflows").json()["workflows"]
    assert [w["name"] for w in stored] == ["registered"], "a cross-site page stored a workflow"
    assert httpx.get(gw.url + "/runs").json()["runs"] == [], "a cross-site page started a run"
    assert _ran(gw.marker) == [], "code sent by a cross-site page ran in the gateway"


def test_a_dns_rebinding_page_is_refused(browser, keyless_gateway):
    gw = keyless_gateway
    context = browser.new_context()
    try:
        pg = context.new_page()
        pg.set_default_timeout(WAIT_MS)
        # after rebinding, the attacker's name points at 127.0.0.1: the browser sees one origin
        pg.goto(f"http://{REBIND_HOST}:{gw.port}/health")
        outcome = pg.evaluate("""async () => {
            const listed = await fetch('/workflows');
            const ran = await fetch('/workflows/registered/execute', {method: 'POST',
                headers: {'Content-Type': 'application/json'}, body: JSON.stringify({parameters: {x: 1}})});
            return {listed: listed.status, ran: ran.status, body: await ran.text()};
        }""")
    finally:
        context.close()
    assert outcome["listed"] == 403 and outcome["ran"] == 403, outcome
    assert "host_not_allowed" in outcome["body"]
    assert httpx.get(gw.url + "/runs").json()["runs"] == []
    assert _ran(gw.marker) == []


def test_the_gateways_own_pages_still_work(browser, keyless_gateway):
    gw = keyless_gateway
    context = browser.new_context()
    try:
        pg = context.new_page()
        pg.set_default_timeout(WAIT_MS)
        pg.goto(f"{gw.url}/health")
        status = pg.evaluate("""async () => (await fetch('/workflows/registered/execute', {method: 'POST',
            headers: {'Content-Type': 'application/json'}, body: JSON.stringify({parameters: {x: 5}})})).status""")
    finally:
        context.close()
    assert status == 200
    assert _ran(gw.marker) == ["ran-registered"]
