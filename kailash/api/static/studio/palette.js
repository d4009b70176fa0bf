// The node palette: every node type of the gateway's catalog, grouped by category.
//
// Built from GET /nodes. Entries are HTML5-draggable onto the canvas (the type name
// travels as application/x-kailash-node); a click shows the type's docs in the
// inspector, a double-click adds it. The search box filters by name, category,
// description and parameter names.

import { categoryColor } from "./canvas.js";

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text != null) e.textContent = text;
  return e;
}

// Docstrings use reST roles and literals; the palette shows them as plain text.
export function plain(text) {
  return String(text).replace(/:[a-z]+:`~?([^`]+)`/g, "$1").replace(/``([^`]+)``/g, "$1").replace(/`([^`]+)`/g, "$1");
}

export class Palette {
  constructor(root, search, { onShow, onAdd }) {
    this.root = root;
    this.search = search;
    this.onShow = onShow;
    this.onAdd = onAdd;
    this.types = [];
    search.addEventListener("input", () => this.filter(search.value));
  }

  load(types) {
    this.types = [...types].sort((a, b) => a.name.localeCompare(b.name));
    const groups = new Map();
    for (const t of this.types) {
      const cat = t.category || "custom";
      if (!groups.has(cat)) groups.set(cat, []);
      groups.get(cat).push(t);
    }
    this.root.replaceChildren();
    for (const cat of [...groups.keys()].sort()) {
      const det = el("details", "palette-group");
      det.open = true;
      det.dataset.category = cat;
      const sum = el("summary", null);
      const dot = el("span", "cat-dot");
      dot.style.background = categoryColor(cat);
      sum.append(dot, el("span", null, cat), el("span", "count", String(groups.get(cat).length)));
      det.append(sum);
      for (const t of groups.get(cat)) det.append(this.item(t, cat));
      this.root.append(det);
    }
    if (!this.types.length) this.root.append(el("p", "muted", "The gateway's catalog is empty."));
    this.filter(this.search.value);
  }

  item(t, cat) {
    const item = el("div", "palette-item");
    item.draggable = true;
    item.dataset.nodeType = t.name;
    item.style.setProperty("--cat", categoryColor(cat));
    item.title = `${plain(t.description || t.name)}\n\nDrag onto the canvas, or double-click to add.`;
    item.append(el("div", "pi-name", t.name.replace(/Node$/, "")));
    if (t.description) item.append(el("div", "pi-desc", plain(t.description)));
    item.addEventListener("dragstart", (e) => {
      e.dataTransfer.setData("application/x-kailash-node", t.name);
      e.dataTransfer.setData("text/plain", t.name);
      e.dataTransfer.effectAllowed = "copy";
    });
    item.addEventListener("click", () => this.onShow(t.name));
    item.addEventListener("dblclick", () => this.onAdd(t.name));
    item.tabIndex = 0;
    item.addEventListener("keydown", (e) => { if (e.key === "Enter") this.onAdd(t.name); });
    item._haystack = [t.name, cat, t.description || "", ...(t.parameters || []).map((p) => p.name)].join(" ").toLowerCase();
    return item;
  }

  filter(query) {
    const words = query.toLowerCase().split(/\s+/).filter(Boolean);
    for (const group of this.root.querySelectorAll(".palette-group")) {
      let shown = 0;
      for (const item of group.querySelectorAll(".palette-item")) {
        const ok = words.every((w) => item._haystack.includes(w));
        item.hidden = !ok;
        if (ok) shown++;
      }
      group.hidden = shown === 0;
      if (words.length && shown) group.open = true;
    }
  }
}
