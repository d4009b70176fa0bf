// The canvas: node cards, SVG connections, moving nodes and dragging new connections.
//
// This module owns what is drawn in #canvas and the pointer gestures on it. It reads the
// Model and changes it only through its methods; it reports selection, drops from the
// palette and new connections to the app through callbacks. Node run status and
// validation problems are kept here so a redraw keeps them.
//
// The view: the stage is scaled by `zoom` (CSS transform) inside a sizer that gives the
// scroll area its scaled size; panning is scrolling (drag the background, or the wheel),
// Ctrl/⌘+wheel zooms at the pointer, fit() shows every node, and a minimap shows where
// the view is (click or drag it to move there). Model coordinates never change with zoom.

const SVG = "http://www.w3.org/2000/svg";
export const NODE_WIDTH = 220;
const PORT_Y = 23; // vertical centre of the ports, from the top of a card
const CATEGORY_COLORS = {
  data: "#2f80ed", code: "#9b51e0", logic: "#f2994a", api: "#27ae60", ai: "#eb5757",
  mcp: "#00a3a3", custom: "#6b7280",
};

export function categoryColor(category) {
  if (CATEGORY_COLORS[category]) return CATEGORY_COLORS[category];
  let h = 0;
  for (const ch of String(category)) h = (h * 31 + ch.charCodeAt(0)) % 360;
  return `hsl(${h} 55% 45%)`;
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text != null) e.textContent = text;
  return e;
}

function short(value) {
  let s = typeof value === "string" ? value : JSON.stringify(value);
  s = s.replace(/\s+/g, " ").trim();
  return s.length > 34 ? s.slice(0, 33) + "…" : s;
}

export class Canvas {
  constructor(root, model, { onSelect, onDropType, onConnect, onMessage }) {
    this.root = root;
    this.model = model;
    this.onSelect = onSelect;
    this.onDropType = onDropType;
    this.onConnect = onConnect;
    this.onMessage = onMessage || (() => {});
    this.zoom = 1;
    this.sizer = el("div", "sizer");
    this.stage = el("div", "stage");
    this.svg = document.createElementNS(SVG, "svg");
    this.svg.classList.add("edges");
    this.stage.append(this.svg);
    this.hint = el("div", "canvas-hint", "Drag nodes here from the palette, then drag from a node's ● output port to another node to connect them.");
    this.sizer.append(this.stage);
    this.root.append(this.sizer, this.hint);
    this.minimap = null;
    this.cards = new Map();
    this.status = new Map(); // node id -> {status, detail}
    this.problems = new Map(); // node id -> [text]
    this.edgeProblems = new Set(); // "from->to"
    this.needs = {}; // node id -> [parameters the run must supply]
    this.selected = null; // {kind: "node", id} | {kind: "edge", edge}
    this.bindDrop();
    this.root.addEventListener("pointerdown", (e) => {
      const background = [this.root, this.sizer, this.stage, this.svg].includes(e.target);
      if (background && e.button === 0) this.select(null);
      if ((background && e.button === 0) || e.button === 1) this.startPan(e);
    });
    this.root.addEventListener("wheel", (e) => {
      if (!e.ctrlKey && !e.metaKey) return; // plain wheel scrolls (pans)
      e.preventDefault();
      this.setZoom(this.zoom * Math.exp(-e.deltaY * 0.0015), e.clientX, e.clientY);
    }, { passive: false });
    this.root.addEventListener("scroll", () => this.drawMinimap());
  }

  // -- drawing ---------------------------------------------------------------------------
  render() {
    for (const card of this.cards.values()) card.remove();
    this.cards.clear();
    for (const node of this.model.nodes.values()) {
      const card = this.buildCard(node);
      this.cards.set(node.id, card);
      this.stage.append(card);
    }
    if (this.selected?.kind === "node" && !this.model.nodes.has(this.selected.id)) this.selected = null;
    if (this.selected?.kind === "edge" && !this.model.edges.includes(this.selected.edge)) this.selected = null;
    this.hint.hidden = this.model.nodes.size > 0;
    this.refreshSelection();
    this.drawEdges();
    this.resizeStage();
  }

  buildCard(node) {
    const desc = this.model.describe(node.type);
    const card = el("div", "node");
    card.dataset.nodeId = node.id;
    card.dataset.status = this.status.get(node.id)?.status || "idle";
    card.style.left = `${node.x}px`;
    card.style.top = `${node.y}px`;
    card.style.width = `${NODE_WIDTH}px`;
    card.style.setProperty("--cat", categoryColor(desc?.category || "custom"));
    if (!desc) card.classList.add("unknown-type");

    const head = el("div", "node-head");
    const inPort = el("span", "port port-in");
    inPort.dataset.port = "in";
    inPort.title = `input${desc?.primary_input ? `: ${desc.primary_input}` : ""} — drop a connection here`;
    const outPort = el("span", "port port-out");
    outPort.dataset.port = "out";
    outPort.title = `output${desc?.primary_output ? `: ${desc.primary_output}` : ""} — drag to another node to connect`;
    const title = el("div", "node-title");
    title.append(el("b", "node-id", node.id), el("small", "node-type", node.type));
    const status = el("span", "node-status", card.dataset.status);
    head.append(inPort, title, status, outPort);

    const body = el("div", "node-body");
    const ports = el("div", "port-labels");
    ports.append(el("span", null, desc?.primary_input ? `▸ ${desc.primary_input}` : "▸ in"),
      el("span", null, desc?.primary_output ? `${desc.primary_output} ▸` : "out ▸"));
    body.append(ports);
    const entries = Object.entries(node.config).filter(([k]) => k !== "code");
    if (node.config.code) body.append(el("div", "node-summary code", short(node.config.code)));
    for (const [k, v] of entries.slice(0, 3)) body.append(el("div", "node-summary", `${k}: ${short(v)}`));
    if (!desc) body.append(el("div", "node-summary warn", "type not in this gateway's catalog"));
    const needs = el("div", "node-needs");
    needs.title = "Give these in the Run dialog, set them here, or connect a node that supplies them.";
    body.append(needs);
    const probs = el("ul", "node-problems");
    body.append(probs);
    const detail = el("div", "node-detail");
    body.append(detail);
    card.append(head, body);
    this.paintProblems(card, node.id);
    this.paintStatus(card, node.id);
    this.paintNeeds(card, node.id);

    head.addEventListener("pointerdown", (e) => this.startMove(e, node));
    body.addEventListener("pointerdown", (e) => {
      if (e.button === 0) this.select({ kind: "node", id: node.id });
    });
    outPort.addEventListener("pointerdown", (e) => this.startConnect(e, node));
    return card;
  }

  portPoint(id, which) {
    const node = this.model.nodes.get(id);
    const card = this.cards.get(id);
    const w = card ? card.offsetWidth || NODE_WIDTH : NODE_WIDTH;
    return which === "out" ? [node.x + w, node.y + PORT_Y] : [node.x, node.y + PORT_Y];
  }

  static curve([x1, y1], [x2, y2]) {
    const dx = Math.max(40, Math.abs(x2 - x1) / 2);
    return `M${x1},${y1} C${x1 + dx},${y1} ${x2 - dx},${y2} ${x2},${y2}`;
  }

  drawEdges() {
    this.svg.replaceChildren();
    const defs = document.createElementNS(SVG, "defs");
    defs.innerHTML = '<marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="context-stroke"/></marker>';
    this.svg.append(defs);
    for (const edge of this.model.edges) {
      if (!this.model.nodes.has(edge.from) || !this.model.nodes.has(edge.to)) continue;
      const a = this.portPoint(edge.from, "out");
      const b = this.portPoint(edge.to, "in");
      const d = Canvas.curve(a, b);
      const g = document.createElementNS(SVG, "g");
      g.classList.add("edge");
      g.dataset.from = edge.from;
      g.dataset.to = edge.to;
      if (this.selected?.edge === edge) g.classList.add("selected");
      if (this.edgeProblems.has(`${edge.from}->${edge.to}`)) g.classList.add("invalid");
      const hit = document.createElementNS(SVG, "path");
      hit.setAttribute("d", d);
      hit.classList.add("edge-hit");
      const line = document.createElementNS(SVG, "path");
      line.setAttribute("d", d);
      line.classList.add("edge-line");
      line.setAttribute("marker-end", "url(#arrow)");
      g.append(hit, line);
      const label = edge.port ? `port: ${edge.port}` : edge.mapping
        ? Object.entries(edge.mapping).map(([k, v]) => `${k} → ${v}`).join(", ") : "";
      if (label) {
        const t = document.createElementNS(SVG, "text");
        t.setAttribute("x", (a[0] + b[0]) / 2);
        t.setAttribute("y", (a[1] + b[1]) / 2 - 8);
        t.setAttribute("text-anchor", "middle");
        t.classList.add("edge-label");
        t.textContent = label.length > 40 ? label.slice(0, 39) + "…" : label;
        g.append(t);
      }
      g.addEventListener("pointerdown", (e) => {
        e.stopPropagation();
        this.select({ kind: "edge", edge });
      });
      this.svg.append(g);
    }
    if (this.tempPath) this.svg.append(this.tempPath); // a connection being dragged survives a redraw
    this.drawMinimap();
  }

  resizeStage() {
    const z = this.zoom;
    let w = this.root.clientWidth / z;
    let h = this.root.clientHeight / z;
    for (const n of this.model.nodes.values()) {
      w = Math.max(w, n.x + NODE_WIDTH + 200);
      h = Math.max(h, n.y + 300);
    }
    this.stage.style.width = `${w}px`;
    this.stage.style.height = `${h}px`;
    this.stage.style.transform = z === 1 ? "" : `scale(${z})`;
    this.sizer.style.width = `${w * z}px`;
    this.sizer.style.height = `${h * z}px`;
    this.svg.setAttribute("width", w);
    this.svg.setAttribute("height", h);
    this.drawMinimap();
  }

  // -- the view: zoom, fit, pan, minimap -------------------------------------------------
  // Zoom to `z` keeping the point under (clientX, clientY) (default: the view's centre) in place.
  setZoom(z, clientX, clientY) {
    z = Math.min(2, Math.max(0.25, z));
    const r = this.root.getBoundingClientRect();
    const ax = clientX ?? r.left + r.width / 2;
    const ay = clientY ?? r.top + r.height / 2;
    const px = (this.root.scrollLeft + ax - r.left) / this.zoom;
    const py = (this.root.scrollTop + ay - r.top) / this.zoom;
    this.zoom = z;
    this.root.classList.toggle("zoomed-out", z < 0.8);
    this.root.style.setProperty("--inv-zoom", String(Math.min(1.6, 1 / z)));
    this.resizeStage();
    this.drawEdges(); // card heights change when zoomed out
    this.root.scrollLeft = px * z - (ax - r.left);
    this.root.scrollTop = py * z - (ay - r.top);
    this.onZoom?.(z);
  }

  bounds() {
    let x0 = Infinity; let y0 = Infinity; let x1 = -Infinity; let y1 = -Infinity;
    for (const n of this.model.nodes.values()) {
      const card = this.cards.get(n.id);
      x0 = Math.min(x0, n.x);
      y0 = Math.min(y0, n.y);
      x1 = Math.max(x1, n.x + (card?.offsetWidth || NODE_WIDTH));
      y1 = Math.max(y1, n.y + (card?.offsetHeight || 90));
    }
    return x0 === Infinity ? null : { x0, y0, x1, y1 };
  }

  // Show every node: the largest zoom (at most 100 %) at which they all fit.
  fit() {
    let b = this.bounds();
    if (!b) return;
    const pad = 24;
    const bottom = 52; // above the canvas toolbar
    const fitOnce = () => {
      const z = Math.min(1, (this.root.clientWidth - 2 * pad) / (b.x1 - b.x0), (this.root.clientHeight - bottom - pad) / (b.y1 - b.y0));
      this.setZoom(z);
    };
    fitOnce();
    b = this.bounds(); // zoomed out, the cards are shorter: fit again with their new size
    fitOnce();
    this.root.scrollLeft = b.x0 * this.zoom - pad;
    this.root.scrollTop = b.y0 * this.zoom - pad;
    this.drawMinimap();
  }

  startPan(e) {
    const sx = e.clientX; const sy = e.clientY;
    const ox = this.root.scrollLeft; const oy = this.root.scrollTop;
    let moved = false;
    this.root.setPointerCapture(e.pointerId);
    const move = (ev) => {
      if (!moved && Math.abs(ev.clientX - sx) + Math.abs(ev.clientY - sy) < 3) return;
      moved = true;
      this.root.classList.add("panning");
      this.root.scrollLeft = ox - (ev.clientX - sx);
      this.root.scrollTop = oy - (ev.clientY - sy);
    };
    const up = () => {
      this.root.classList.remove("panning");
      this.root.removeEventListener("pointermove", move);
      this.root.removeEventListener("pointerup", up);
      this.root.removeEventListener("pointercancel", up);
    };
    this.root.addEventListener("pointermove", move);
    this.root.addEventListener("pointerup", up);
    this.root.addEventListener("pointercancel", up);
  }

  attachMinimap(box) {
    this.minimap = box;
    const go = (e) => {
      const m = this.minimapFrame;
      if (!m) return;
      const r = box.getBoundingClientRect();
      const x = m.x + (e.clientX - r.left) / m.scale;
      const y = m.y + (e.clientY - r.top) / m.scale;
      this.root.scrollLeft = x * this.zoom - this.root.clientWidth / 2;
      this.root.scrollTop = y * this.zoom - this.root.clientHeight / 2;
    };
    box.addEventListener("pointerdown", (e) => {
      e.preventDefault();
      box.setPointerCapture(e.pointerId);
      go(e);
      const move = (ev) => go(ev);
      const up = () => { box.removeEventListener("pointermove", move); box.removeEventListener("pointerup", up); };
      box.addEventListener("pointermove", move);
      box.addEventListener("pointerup", up);
    });
    this.drawMinimap();
  }

  drawMinimap() {
    const box = this.minimap;
    if (!box) return;
    const b = this.bounds();
    box.hidden = !b;
    if (!b) return;
    const z = this.zoom;
    const view = { x0: this.root.scrollLeft / z, y0: this.root.scrollTop / z,
      x1: (this.root.scrollLeft + this.root.clientWidth) / z, y1: (this.root.scrollTop + this.root.clientHeight) / z };
    const x = Math.min(b.x0, view.x0) - 20; const y = Math.min(b.y0, view.y0) - 20;
    const w = Math.max(b.x1, view.x1) + 20 - x; const h = Math.max(b.y1, view.y1) + 20 - y;
    const scale = Math.min(box.clientWidth / w, box.clientHeight / h) || 0.05;
    this.minimapFrame = { x, y, scale };
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("width", box.clientWidth);
    svg.setAttribute("height", box.clientHeight);
    const rect = (rx, ry, rw, rh, cls) => {
      const r = document.createElementNS(SVG, "rect");
      r.setAttribute("x", (rx - x) * scale); r.setAttribute("y", (ry - y) * scale);
      r.setAttribute("width", Math.max(2, rw * scale)); r.setAttribute("height", Math.max(2, rh * scale));
      r.classList.add(cls);
      return r;
    };
    for (const n of this.model.nodes.values()) {
      const card = this.cards.get(n.id);
      const r = rect(n.x, n.y, card?.offsetWidth || NODE_WIDTH, card?.offsetHeight || 90, "mm-node");
      r.dataset.nodeId = n.id;
      r.dataset.status = this.status.get(n.id)?.status || "idle";
      svg.append(r);
    }
    svg.append(rect(view.x0, view.y0, view.x1 - view.x0, view.y1 - view.y0, "mm-view"));
    box.replaceChildren(svg);
  }

  // -- selection, status, problems -------------------------------------------------------
  select(sel) {
    this.selected = sel;
    this.refreshSelection();
    this.drawEdges();
    this.onSelect(sel);
  }

  refreshSelection() {
    for (const [id, card] of this.cards) card.classList.toggle("selected", this.selected?.kind === "node" && this.selected.id === id);
  }

  setStatus(id, status, detail = "") {
    if (status === "idle") this.status.delete(id);
    else this.status.set(id, { status, detail });
    const card = this.cards.get(id);
    if (card) this.paintStatus(card, id);
  }

  renameStatus(oldId, newId) {
    for (const map of [this.status, this.problems]) {
      if (map.has(oldId)) {
        map.set(newId, map.get(oldId));
        map.delete(oldId);
      }
    }
  }

  clearStatus() {
    this.status.clear();
    for (const [id, card] of this.cards) this.paintStatus(card, id);
  }

  paintStatus(card, id) {
    const s = this.status.get(id) || { status: "idle", detail: "" };
    card.dataset.status = s.status;
    card.querySelector(".node-status").textContent = s.status === "notrun" ? "not run" : s.status;
    const detail = card.querySelector(".node-detail");
    detail.textContent = s.detail || "";
    detail.title = s.detail || "";
    detail.hidden = !s.detail;
  }

  // Painted in place (never a redraw): answers arrive while the user may be dragging.
  setNeeds(needs) {
    this.needs = needs || {};
    for (const [id, card] of this.cards) this.paintNeeds(card, id);
  }

  paintNeeds(card, id) {
    const names = (Object.hasOwn(this.needs, id) ? this.needs[id] : []).map((p) => p.name);
    const line = card.querySelector(".node-needs");
    line.textContent = names.length ? `needs at run time: ${names.join(", ")}` : "";
    line.hidden = !names.length;
  }

  setProblems(byNode, edgeKeys) {
    this.problems = byNode;
    this.edgeProblems = edgeKeys;
    for (const [id, card] of this.cards) this.paintProblems(card, id);
    this.drawEdges();
  }

  paintProblems(card, id) {
    const list = this.problems.get(id) || [];
    card.classList.toggle("invalid", list.length > 0);
    const ul = card.querySelector(".node-problems");
    ul.replaceChildren(...list.slice(0, 3).map((p) => {
      // The card already says which node: drop the "node 'id' (Type): " prefix.
      const li = el("li", null, p.replace(/^node '[^']+'( \([^)]*\))?:? ?/, ""));
      li.title = p;
      return li;
    }));
    if (list.length > 3) ul.append(el("li", "more", `+${list.length - 3} more`));
  }

  // -- gestures --------------------------------------------------------------------------
  stagePoint(e) {
    const r = this.stage.getBoundingClientRect();
    return [(e.clientX - r.left) / this.zoom, (e.clientY - r.top) / this.zoom];
  }

  bindDrop() {
    this.root.addEventListener("dragover", (e) => {
      if ([...e.dataTransfer.types].includes("application/x-kailash-node")) {
        e.preventDefault();
        e.dataTransfer.dropEffect = "copy";
        this.root.classList.add("drop-target");
      }
    });
    this.root.addEventListener("dragleave", () => this.root.classList.remove("drop-target"));
    this.root.addEventListener("drop", (e) => {
      this.root.classList.remove("drop-target");
      const type = e.dataTransfer.getData("application/x-kailash-node");
      if (!type) return;
      e.preventDefault();
      const [x, y] = this.stagePoint(e);
      this.onDropType(type, x - NODE_WIDTH / 2, y - PORT_Y);
    });
  }

  startMove(e, node) {
    if (e.button !== 0 || e.target.classList.contains("port")) return;
    e.preventDefault();
    this.select({ kind: "node", id: node.id });
    const [sx, sy] = this.stagePoint(e);
    const ox = node.x;
    const oy = node.y;
    const card = this.cards.get(node.id);
    card.setPointerCapture(e.pointerId);
    card.classList.add("moving");
    const move = (ev) => {
      const [x, y] = this.stagePoint(ev);
      this.model.moveNode(node.id, ox + x - sx, oy + y - sy);
      card.style.left = `${node.x}px`;
      card.style.top = `${node.y}px`;
      this.drawEdges();
    };
    const up = () => {
      card.classList.remove("moving");
      card.removeEventListener("pointermove", move);
      card.removeEventListener("pointerup", up);
      card.removeEventListener("pointercancel", up);
      this.resizeStage();
      this.onMoved?.(node.id);
    };
    card.addEventListener("pointermove", move);
    card.addEventListener("pointerup", up);
    card.addEventListener("pointercancel", up);
  }

  startConnect(e, node) {
    if (e.button !== 0) return;
    e.preventDefault();
    e.stopPropagation();
    const port = e.currentTarget;
    port.setPointerCapture(e.pointerId);
    const start = this.portPoint(node.id, "out");
    const temp = document.createElementNS(SVG, "path");
    temp.classList.add("edge-temp");
    this.svg.append(temp);
    this.tempPath = temp;
    this.root.classList.add("connecting");
    const targetAt = (ev) => {
      const hit = document.elementFromPoint(ev.clientX, ev.clientY);
      const card = hit && hit.closest(".node");
      return card && card.dataset.nodeId !== node.id ? card : null;
    };
    let over = null;
    const move = (ev) => {
      temp.setAttribute("d", Canvas.curve(start, this.stagePoint(ev)));
      const card = targetAt(ev);
      if (over && over !== card) over.classList.remove("connect-target");
      over = card;
      if (over) over.classList.add("connect-target");
    };
    const up = (ev) => {
      port.removeEventListener("pointermove", move);
      port.removeEventListener("pointerup", up);
      port.removeEventListener("pointercancel", up);
      temp.remove();
      this.tempPath = null;
      this.root.classList.remove("connecting");
      if (over) over.classList.remove("connect-target");
      const card = ev.type === "pointerup" ? targetAt(ev) : null;
      if (card) this.onConnect(node.id, card.dataset.nodeId);
    };
    port.addEventListener("pointermove", move);
    port.addEventListener("pointerup", up);
    port.addEventListener("pointercancel", up);
  }
}
