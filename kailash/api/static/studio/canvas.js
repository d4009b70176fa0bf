// The canvas: node cards, SVG connections, moving nodes and dragging new connections.
//
// This module owns what is drawn in #canvas and the pointer gestures on it. It reads the
// Model and changes it only through its methods; it reports selection, drops from the
// palette and new connections to the app through callbacks. Node run status and
// validation problems are kept here so a redraw keeps them.

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
    this.stage = el("div", "stage");
    this.svg = document.createElementNS(SVG, "svg");
    this.svg.classList.add("edges");
    this.stage.append(this.svg);
    this.hint = el("div", "canvas-hint", "Drag nodes here from the palette, then drag from a node's ● output port to another node to connect them.");
    this.root.append(this.stage, this.hint);
    this.cards = new Map();
    this.status = new Map(); // node id -> {status, detail}
    this.problems = new Map(); // node id -> [text]
    this.edgeProblems = new Set(); // "from->to"
    this.needs = {}; // node id -> [parameters the run must supply]
    this.selected = null; // {kind: "node", id} | {kind: "edge", edge}
    this.bindDrop();
    this.root.addEventListener("pointerdown", (e) => {
      if (e.target === this.root || e.target === this.stage || e.target === this.svg) this.select(null);
    });
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
  }

  resizeStage() {
    let w = this.root.clientWidth;
    let h = this.root.clientHeight;
    for (const n of this.model.nodes.values()) {
      w = Math.max(w, n.x + NODE_WIDTH + 200);
      h = Math.max(h, n.y + 300);
    }
    this.stage.style.width = `${w}px`;
    this.stage.style.height = `${h}px`;
    this.svg.setAttribute("width", w);
    this.svg.setAttribute("height", h);
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
    return [e.clientX - r.left, e.clientY - r.top];
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
