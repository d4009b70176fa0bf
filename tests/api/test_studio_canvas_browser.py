"""The Studio canvas at a laptop's 1280×800 in real headless Chromium: an 8-node workflow fits
and stays readable; zoom, pan, fit-to-view, the minimap and undo/redo work on it.

Screenshots land in ``test-artifacts/`` (gitignored; CI keeps them as artifacts).
"""

from __future__ import annotations

import pytest
from test_studio_browser import ARTIFACTS, KEY, WAIT_MS, browser, enter_key, served  # noqa: F401 - fixtures

from kailash.workflow import Workflow

pytestmark = pytest.mark.browser


def eight_node_workflow() -> Workflow:
    """Read, three checks side by side, merge, two outputs, store: five columns, eight nodes."""
    from kailash.nodes.code.python import PythonCodeNode

    wf = Workflow("orders_pipeline")
    wf.add_node("read_orders", PythonCodeNode(code="result = [{'id': 1, 'total': 30}, {'id': 2, 'total': 70}]"))
    wf.add_node("clean", PythonCodeNode(code="result = [r for r in data if r['total'] > 0]"))
    wf.add_node("enrich", PythonCodeNode(code="result = [dict(r, vip=r['total'] > 50) for r in data]"))
    wf.add_node("check_totals", PythonCodeNode(code="result = sum(r['total'] for r in data)"))
    wf.add_node("merge", PythonCodeNode(code="result = {'rows': a, 'vip': b, 'total': c}"))
    wf.add_node("report", PythonCodeNode(code="result = f\"{len(data['rows'])} orders\""))
    wf.add_node("alert", PythonCodeNode(code="result = data['total'] > 90"))
    wf.add_node("store", PythonCodeNode(code="result = data"))
    for mid in ("clean", "enrich", "check_totals"):
        wf.connect("read_orders", mid)
    wf.connect("clean", "merge", mapping={"result": "a"})
    wf.connect("enrich", "merge", mapping={"result": "b"})
    wf.connect("check_totals", "merge", mapping={"result": "c"})
    wf.connect("merge", "report")
    wf.connect("merge", "alert")
    wf.connect("report", "store")
    return wf


@pytest.fixture
def laptop(browser, served):  # noqa: F811
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    pg = context.new_page()
    pg.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.goto(served.url + "/studio")
    pg.wait_for_selector("body[data-ready='1']")
    yield pg
    context.close()
    assert not errors, f"JavaScript errors in the Studio: {errors}"


def zoom(pg) -> float:
    return pg.evaluate("() => window.kailashStudio.canvas.zoom")


def node_pos(pg, node_id):
    return pg.evaluate("id => { const n = window.kailashStudio.model.nodes.get(id); return [n.x, n.y]; }", node_id)


def test_eight_nodes_fit_and_read_at_1280x800(laptop, tmp_path):
    pg = laptop
    enter_key(pg)
    path = eight_node_workflow().save(tmp_path / "orders_pipeline.json")
    pg.set_input_files("#import-file", str(path))
    pg.wait_for_selector(".node[data-node-id='store']")
    pg.wait_for_selector("#validation[data-state='valid']")
    pg.wait_for_timeout(300)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / "studio-canvas-8-nodes-1280x800.png"))

    view = pg.locator("#canvas").bounding_box()
    boxes = {n: pg.locator(f".node[data-node-id='{n}']").bounding_box()
             for n in pg.eval_on_selector_all(".node", "els => els.map(e => e.dataset.nodeId)")}
    assert len(boxes) == 8
    for n, b in boxes.items():  # every card wholly in view
        assert view["x"] <= b["x"] and b["x"] + b["width"] <= view["x"] + view["width"] + 0.5, n
        assert view["y"] <= b["y"] and b["y"] + b["height"] <= view["y"] + view["height"] + 0.5, n
    items = list(boxes.items())
    for i, (a, ba) in enumerate(items):  # and no two overlap
        for b, bb in items[i + 1:]:
            apart = (ba["x"] + ba["width"] <= bb["x"] or bb["x"] + bb["width"] <= ba["x"]
                     or ba["y"] + ba["height"] <= bb["y"] or bb["y"] + bb["height"] <= ba["y"])
            assert apart, (a, b)
    z = zoom(pg)
    assert 0.5 <= z <= 1
    # readable: the node ids are drawn at 11 px or more on screen, and not cut short
    for n in boxes:
        px = pg.eval_on_selector(f".node[data-node-id='{n}'] .node-id", "e => parseFloat(getComputedStyle(e).fontSize)")
        assert px * z >= 11, (n, px, z)
        assert pg.eval_on_selector(f".node[data-node-id='{n}'] .node-id", "e => e.scrollWidth <= e.clientWidth"), n
    assert pg.inner_text("#zoom-level") == f"{round(z * 100)}%"


def test_zoom_pan_fit_minimap_and_undo_redo(laptop, tmp_path):
    pg = laptop
    enter_key(pg)
    pg.set_input_files("#import-file", str(eight_node_workflow().save(tmp_path / "orders_pipeline.json")))
    pg.wait_for_selector(".node[data-node-id='store']")
    fitted = zoom(pg)

    pg.click("#btn-zoom-in")
    assert zoom(pg) == pytest.approx(fitted * 1.2)
    pg.click("#zoom-level")
    assert zoom(pg) == 1 and pg.inner_text("#zoom-level") == "100%"

    # at 100 % the workflow is wider than the view: drag the background to pan
    canvas = pg.locator("#canvas").bounding_box()
    before = pg.eval_on_selector("#canvas", "e => e.scrollLeft")
    x, y = canvas["x"] + canvas["width"] / 2, canvas["y"] + canvas["height"] - 20  # empty: between toolbar and minimap
    pg.mouse.move(x, y)
    pg.mouse.down()
    pg.mouse.move(x - 150, y, steps=5)
    pg.mouse.up()
    assert pg.eval_on_selector("#canvas", "e => e.scrollLeft") == pytest.approx(before + 150, abs=2)

    # the minimap: a rectangle per node and one for the view; clicking its left edge moves there
    assert pg.locator("#minimap .mm-node").count() == 8 and pg.locator("#minimap .mm-view").count() == 1
    mm = pg.locator("#minimap").bounding_box()
    pg.mouse.click(mm["x"] + 4, mm["y"] + mm["height"] / 2)
    assert pg.eval_on_selector("#canvas", "e => e.scrollLeft") == 0
    pg.screenshot(path=str(ARTIFACTS / "studio-canvas-zoomed-minimap.png"))

    pg.keyboard.press("Shift+Digit1")  # fit again
    assert zoom(pg) == pytest.approx(fitted)

    # a drag at this zoom moves the node by the pointer's distance in canvas units; undo puts it back
    start = node_pos(pg, "merge")
    head = pg.locator(".node[data-node-id='merge'] .node-title").bounding_box()
    pg.mouse.move(head["x"] + 10, head["y"] + 5)
    pg.mouse.down()
    pg.mouse.move(head["x"] + 10, head["y"] + 5 + 60, steps=6)
    pg.mouse.up()
    moved = node_pos(pg, "merge")
    assert moved[1] - start[1] == pytest.approx(60 / zoom(pg), abs=2)
    pg.wait_for_function("() => !document.querySelector('#btn-undo').disabled")
    pg.click("#canvas", position={"x": 5, "y": 300})  # focus the canvas (background: nothing selected)
    pg.keyboard.press("Control+z")
    assert node_pos(pg, "merge") == start
    pg.keyboard.press("Control+Shift+z")
    assert node_pos(pg, "merge") == moved

    # delete a node with its three connections; undo brings them all back
    pg.click(".node[data-node-id='merge'] .node-title")
    pg.click("#canvas", position={"x": 5, "y": 300})
    pg.click(".node[data-node-id='merge'] .node-body")
    pg.keyboard.press("Delete")
    pg.wait_for_selector(".node[data-node-id='merge']", state="detached")
    assert pg.locator("g.edge").count() == 4
    pg.click("#btn-undo")
    pg.wait_for_selector(".node[data-node-id='merge']")
    assert pg.locator("g.edge").count() == 9
    pg.click("#btn-redo")
    pg.wait_for_selector(".node[data-node-id='merge']", state="detached")
