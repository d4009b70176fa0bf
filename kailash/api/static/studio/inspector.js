// The inspector: the right-hand panel showing what is selected.
//
// A node: its id, type, docs, a form for every parameter of its type (typed inputs,
// problems shown next to the field they concern) and its outputs from the last run.
// A connection: how outputs reach the target (default rule, a named port or a mapping).
// Nothing: the workflow's name, description, problems and run-time inputs; a palette
// entry: that node type's docs and parameters. Edits go straight into the Model.

import { plain } from "./palette.js";

const MULTILINE = /(^|_)(code|template|query|prompt|script|body|sql|expression|system_prompt|text)$/;

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text != null) e.textContent = text;
  return e;
}

function kindOf(type) {
  const t = String(type || "any").toLowerCase().replace(/\s+/g, "");
  const parts = t.split("|").filter((p) => p !== "none" && p !== "nonetype");
  if (parts.length === 1 && parts[0] === "bool") return "bool";
  if (parts.length && parts.every((p) => p === "int" || p === "float")) return parts.includes("float") ? "float" : "int";
  if (parts.length === 1 && parts[0] === "str") return "str";
  return "json";
}

export function pretty(value, limit = 20000) {
  let s;
  try { s = typeof value === "string" ? value : JSON.stringify(value, null, 2); } catch { s = String(value); }
  if (s === undefined) s = "null";
  return s.length > limit ? s.slice(0, limit) + `\n… (${s.length - limit} more characters)` : s;
}

export class Inspector {
  constructor(root, model, { onDelete, onMessage }) {
    this.root = root;
    this.model = model;
    this.onDelete = onDelete;
    this.onMessage = onMessage || (() => {});
    this.selection = null;
    this.problems = { byNode: new Map(), byParam: new Map(), general: [] };
    this.runtime = null; // {id, nodes: {id: {status, duration, error}}, results}
  }

  show(selection) {
    this.selection = selection;
    this.render();
  }

  render() {
    this.root.replaceChildren();
    const sel = this.selection;
    if (sel?.kind === "node" && this.model.nodes.has(sel.id)) this.renderNode(this.model.nodes.get(sel.id));
    else if (sel?.kind === "edge" && this.model.edges.includes(sel.edge)) this.renderEdge(sel.edge);
    else if (sel?.kind === "type") this.renderType(sel.type);
    else this.renderWorkflow();
  }

  section(title) {
    const s = el("section", "insp-section");
    if (title) s.append(el("h3", null, title));
    this.root.append(s);
    return s;
  }

  // -- the workflow ----------------------------------------------------------------------
  renderWorkflow() {
    const s = this.section("Workflow");
    s.append(el("p", "wf-name", this.model.name));
    const desc = this.textField("Description", this.model.description, (v) => { this.model.description = v; this.model.changed("meta"); }, "wf-description", true);
    s.append(desc);
    s.append(el("p", "muted", `${this.model.nodes.size} nodes, ${this.model.edges.length} connections. Select a node or a connection to edit it.`));
    const all = [...this.problems.general, ...[...this.problems.byNode.values()].flat()];
    if (all.length) {
      const p = this.section(`Problems (${all.length})`);
      const ul = el("ul", "problem-list");
      for (const problem of all) ul.append(el("li", null, problem.message));
      p.append(ul);
    }
    const inputs = this.model.runtimeInputs();
    if (Object.keys(inputs).length) {
      const r = this.section("Inputs needed at run time");
      const ul = el("ul", "plain-list");
      for (const [id, ps] of Object.entries(inputs)) ul.append(el("li", null, `${id}: ${ps.map((p) => p.name).join(", ")}`));
      r.append(ul);
    }
  }

  textField(label, value, onInput, id, multiline = false) {
    const wrap = el("label", "field");
    wrap.append(el("span", "field-label", label));
    const input = el(multiline ? "textarea" : "input");
    if (!multiline) input.type = "text";
    else input.rows = 2;
    input.value = value || "";
    if (id) input.id = id;
    input.addEventListener("input", () => onInput(input.value));
    wrap.append(input);
    return wrap;
  }

  // -- a node type from the palette ---------------------------------------------------
  renderType(type) {
    const desc = this.model.describe(type);
    if (!desc) return this.renderWorkflow();
    const s = this.section(desc.name);
    s.append(el("p", "muted", `category: ${desc.category}` +
      (desc.primary_input ? ` · input: ${desc.primary_input}` : "") + (desc.primary_output ? ` · output: ${desc.primary_output}` : "")));
    s.append(el("pre", "doc", desc.doc || desc.description || "(no documentation)"));
    const p = this.section("Parameters");
    p.append(this.paramTable(desc.parameters || []));
    p.append(el("p", "muted", "Drag it onto the canvas (or double-click it in the palette) to add it."));
  }

  paramTable(params) {
    const table = el("table", "param-table");
    for (const prm of params) {
      const tr = el("tr");
      const name = el("td", null, prm.name + (prm.required ? " *" : ""));
      tr.append(name, el("td", "type", prm.type), el("td", null, prm.description || ""));
      table.append(tr);
    }
    return table;
  }

  // -- a node ----------------------------------------------------------------------------
  renderNode(node) {
    const desc = this.model.describe(node.type);
    const head = this.section(null);
    const idField = this.textField("Node id", node.id, () => {}, "node-id-input");
    const idInput = idField.querySelector("input");
    const idErr = el("div", "field-problem");
    const rename = () => {
      if (idInput.value.trim() === node.id) return;
      const err = this.model.renameNode(node.id, idInput.value);
      idErr.textContent = err;
      if (!err) this.render();
    };
    idInput.addEventListener("change", rename);
    idInput.addEventListener("keydown", (e) => { if (e.key === "Enter") rename(); });
    idField.append(idErr);
    head.append(idField);
    head.append(el("p", "muted", `${node.type}` + (desc ? ` · ${desc.category}` : " · not in this gateway's catalog")));
    if (desc?.description) head.append(el("p", "node-desc", plain(desc.description)));
    if (desc?.doc && desc.doc !== desc.description) {
      const more = el("details", "doc-details");
      more.append(el("summary", null, "Documentation"), el("pre", "doc", desc.doc));
      head.append(more);
    }
    const del = el("button", "danger small", "Delete node");
    del.addEventListener("click", () => this.onDelete({ kind: "node", id: node.id }));
    head.append(del);

    const probs = this.problems.byNode.get(node.id) || [];
    const general = probs.filter((p) => !this.paramOf(p, desc));
    if (general.length) {
      const ul = el("ul", "problem-list");
      for (const problem of general) ul.append(el("li", null, problem.message));
      this.section("Problems").append(ul);
    }

    const form = this.section("Parameters");
    form.classList.add("param-form");
    const params = desc?.parameters || [];
    const known = new Set(params.map((p) => p.name));
    for (const prm of params) form.append(this.paramField(node, prm, probs));
    for (const key of Object.keys(node.config).filter((k) => !known.has(k))) {
      form.append(this.paramField(node, { name: key, type: "any", required: false, default: null, description: "not a declared parameter of this type" }, probs));
    }
    if (!params.length && !Object.keys(node.config).length) form.append(el("p", "muted", "This node type takes no parameters."));
    if (desc?.extra_inputs) form.append(this.extraField(node, known));
    this.renderNodeRun(node);
  }

  // The parameter a problem concerns, when this node's form shows a field for it.
  paramOf(problem, desc) {
    const name = problem.parameter;
    if (!name) return null;
    return desc?.parameters?.some((p) => p.name === name) || this.selectionConfigHas(name) ? name : null;
  }

  selectionConfigHas(name) {
    const node = this.selection?.kind === "node" && this.model.nodes.get(this.selection.id);
    return node ? name in node.config : false;
  }

  paramField(node, prm, problems) {
    const kind = kindOf(prm.type);
    const wrap = el("div", "field");
    wrap.dataset.field = prm.name;
    const label = el("label", "field-label");
    label.append(el("span", null, prm.name), el("span", "type", prm.type));
    if (prm.required) label.append(el("span", "req", "required"));
    if (prm.secret) label.append(el("span", "secret", "secret"));
    wrap.append(label);
    const value = node.config[prm.name];
    const err = el("div", "field-problem");
    let input;
    const choices = Array.isArray(prm.choices) && prm.choices.every((c) => typeof c === "string") ? prm.choices : null;
    if (choices && kind !== "bool") {
      // an enum from the parameter's schema: pick one (a value from elsewhere stays selectable)
      input = el("select");
      const dflt = prm.default === null || prm.default === undefined ? "unset" : String(prm.default);
      const options = [["", `default (${dflt})`], ...choices.map((c) => [c, c])];
      if (typeof value === "string" && !choices.includes(value)) options.push([value, `${value} (not allowed)`]);
      for (const [v, t] of options) {
        const o = el("option", null, t);
        o.value = v;
        input.append(o);
      }
      input.value = typeof value === "string" ? value : "";
    } else if (kind === "bool") {
      input = el("select");
      const dflt = prm.default === null || prm.default === undefined ? "unset" : String(prm.default);
      for (const [v, t] of [["", `default (${dflt})`], ["true", "true"], ["false", "false"]]) {
        const o = el("option", null, t);
        o.value = v;
        input.append(o);
      }
      input.value = value === true ? "true" : value === false ? "false" : "";
    } else if (kind === "int" || kind === "float") {
      input = el("input");
      input.type = "number";
      input.step = kind === "int" ? "1" : "any";
      if (typeof prm.minimum === "number") input.min = String(prm.minimum);
      if (typeof prm.maximum === "number") input.max = String(prm.maximum);
      input.value = value ?? "";
      if (prm.default != null) input.placeholder = String(prm.default);
    } else if (kind === "str") {
      const multi = MULTILINE.test(prm.name) || (typeof value === "string" && value.includes("\n"));
      input = el(multi ? "textarea" : "input");
      if (multi) {
        input.rows = prm.name === "code" ? 8 : 3;
        input.classList.add("mono");
        input.spellcheck = false;
      } else {
        input.type = prm.secret ? "password" : "text";
      }
      input.value = typeof value === "string" ? value : value == null ? "" : JSON.stringify(value);
      input.placeholder = prm.secret ? "${ENV_VAR} (recommended) or the value" : prm.default != null ? String(prm.default) : "";
    } else {
      input = el("textarea");
      input.rows = 2;
      input.classList.add("mono");
      input.spellcheck = false;
      input.value = value === undefined ? "" : typeof value === "string" ? value : JSON.stringify(value, null, 2);
      input.placeholder = prm.default != null ? JSON.stringify(prm.default) : "JSON value";
    }
    input.dataset.param = prm.name;
    input.id = `param-${prm.name}`;
    label.htmlFor = input.id;
    const apply = () => {
      const [v, msg] = this.parse(kind, prm, input.value);
      err.textContent = msg;
      wrap.classList.toggle("local-error", !!msg);
      if (!msg) this.model.setParam(node.id, prm.name, v);
    };
    input.addEventListener(kind === "bool" || choices ? "change" : "input", apply);
    wrap.append(input);
    if (prm.description) wrap.append(el("div", "field-help", prm.description));
    const mine = problems.filter((p) => p.parameter === prm.name);
    if (mine.length) {
      wrap.classList.add("has-problem");
      err.textContent = mine.map((p) => p.message).join("\n");
    }
    wrap.append(err);
    return wrap;
  }

  parse(kind, prm, text) {
    if (text === "") return [undefined, ""];
    if (Array.isArray(prm.choices) && kind !== "bool" && prm.choices.includes(text)) return [text, ""];
    if (kind === "bool") return [text === "true", ""];
    if (kind === "int" || kind === "float") {
      const n = Number(text);
      if (!Number.isFinite(n)) return [undefined, `${prm.name} expects a number`];
      if (kind === "int" && !Number.isInteger(n)) return [undefined, `${prm.name} expects a whole number`];
      if (typeof prm.minimum === "number" && n < prm.minimum) return [undefined, `${prm.name} must be at least ${prm.minimum}`];
      if (typeof prm.maximum === "number" && n > prm.maximum) return [undefined, `${prm.name} must be at most ${prm.maximum}`];
      return [n, ""];
    }
    if (kind === "str") return [text, ""];
    try {
      return [JSON.parse(text), ""];
    } catch {
      const t = String(prm.type).toLowerCase();
      if (t === "any" || t.includes("str")) return [text, ""];
      return [undefined, `${prm.name} expects JSON (${prm.type}), e.g. ${t.includes("dict") ? '{"key": "value"}' : '["a", "b"]'}`];
    }
  }

  // Nodes that take undeclared inputs (PythonCodeNode) can get constant inputs too.
  extraField(node, known) {
    const extras = Object.fromEntries(Object.entries(node.config).filter(([k]) => !known.has(k)));
    const wrap = el("details", "extra-inputs");
    wrap.append(el("summary", null, "Add a constant input"));
    const name = el("input");
    name.placeholder = "input name";
    name.dataset.extraName = "1";
    const add = el("button", "small", "Add");
    add.addEventListener("click", () => {
      const n = name.value.trim();
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(n) || n === "__proto__" || known.has(n) || Object.hasOwn(extras, n)) {
        this.onMessage(`'${n}' is not a new input name`, "error");
        return;
      }
      this.model.setParam(node.id, n, null);
      this.render();
    });
    const row = el("div", "row");
    row.append(name, add);
    wrap.append(row);
    return wrap;
  }

  renderNodeRun(node) {
    const run = this.runtime;
    const info = run?.nodes?.[node.id];
    if (!info) return;
    const s = this.section("Last run");
    s.append(el("p", `run-line status-${info.status}`, `${info.status}` + (info.duration != null ? ` in ${(info.duration * 1000).toFixed(1)} ms` : "")));
    if (info.error) s.append(el("pre", "error-text", info.error));
    const out = run.results && Object.hasOwn(run.results, node.id) ? run.results[node.id] : undefined;
    if (out !== undefined) {
      s.append(el("div", "field-label", "Outputs"));
      const pre = el("pre", "result-json", pretty(out));
      pre.dataset.resultsFor = node.id;
      s.append(pre);
    }
  }

  // -- a connection ----------------------------------------------------------------------
  renderEdge(edge) {
    const src = this.model.describe(this.model.nodes.get(edge.from)?.type);
    const dst = this.model.describe(this.model.nodes.get(edge.to)?.type);
    const s = this.section(`Connection ${edge.from} → ${edge.to}`);
    const mode = edge.port ? "port" : edge.mapping ? "mapping" : "default";
    const modes = el("div", "modes");
    const body = el("div", "edge-body");
    const choose = (m, initial = false) => {
      for (const b of modes.children) b.classList.toggle("active", b.dataset.mode === m);
      body.replaceChildren();
      if (m === "default") {
        body.append(el("p", "muted", `Every output of '${edge.from}' is offered to '${edge.to}' by name, and ` +
          `${src?.primary_output ? `its '${src.primary_output}'` : "its primary output"} feeds ` +
          `${dst?.primary_input ? `'${dst.primary_input}'` : "the primary input"}.`));
        if (!initial) this.model.updateEdge(edge, {});
      } else if (m === "port") {
        const input = el("input");
        input.value = edge.port || src?.primary_output || "";
        input.placeholder = "output name, e.g. a SwitchNode branch";
        input.dataset.edgePort = "1";
        const outs = this.outputsOf(edge.from, src);
        if (outs.length) {
          const dl = el("datalist");
          dl.id = `outputs-${edge.from}`;
          for (const o of outs) { const opt = el("option"); opt.value = o; dl.append(opt); }
          input.setAttribute("list", dl.id);
          body.append(dl);
        }
        input.addEventListener("input", () => this.model.updateEdge(edge, { port: input.value.trim() }));
        body.append(el("p", "muted", `This output of '${edge.from}' feeds the primary input of '${edge.to}'.`), input);
        if (input.value && !initial) this.model.updateEdge(edge, { port: input.value.trim() });
      } else {
        this.mappingEditor(edge, src, dst, body, initial);
      }
    };
    for (const [m, label] of [["default", "Default"], ["port", "Named output"], ["mapping", "Mapping"]]) {
      const b = el("button", "small", label);
      b.dataset.mode = m;
      b.addEventListener("click", () => choose(m));
      modes.append(b);
    }
    s.append(modes, body);
    choose(mode, true);
    const del = el("button", "danger small", "Delete connection");
    del.addEventListener("click", () => this.onDelete({ kind: "edge", edge }));
    this.section(null).append(del);
  }

  // Output names a node is known to produce: the catalog's, a switch's branches, its primary output.
  outputsOf(id, desc) {
    const node = this.model.nodes.get(id);
    const names = new Set(desc?.outputs || []);
    if (desc?.primary_output) names.add(desc.primary_output);
    const branches = node?.config?.outputs;
    if (Array.isArray(branches)) branches.forEach((b) => names.add(String(b)));
    else if (branches && typeof branches === "object") Object.keys(branches).forEach((b) => names.add(b));
    if (branches) names.add("default");
    return [...names];
  }

  mappingEditor(edge, src, dst, body, initial) {
    const rows = Object.entries(edge.mapping || { [src?.primary_output || "result"]: dst?.primary_input || "data" });
    const table = el("div", "mapping");
    const targets = (dst?.parameters || []).map((p) => p.name);
    const listId = `targets-${edge.to}`;
    const dl = el("datalist");
    dl.id = listId;
    for (const t of targets) { const o = el("option"); o.value = t; dl.append(o); }
    const sync = () => {
      const m = {};
      for (const r of table.querySelectorAll(".map-row")) {
        const [a, b] = r.querySelectorAll("input");
        if (a.value.trim() && b.value.trim()) m[a.value.trim()] = b.value.trim();
      }
      this.model.updateEdge(edge, { mapping: m });
    };
    const addRow = (from = "", to = "") => {
      const r = el("div", "map-row");
      const a = el("input");
      a.value = from;
      a.placeholder = `output of ${edge.from}`;
      const b = el("input");
      b.value = to;
      b.placeholder = `input of ${edge.to}`;
      b.setAttribute("list", listId);
      const x = el("button", "small", "✕");
      x.title = "remove this pair";
      x.addEventListener("click", () => { r.remove(); sync(); });
      a.addEventListener("input", sync);
      b.addEventListener("input", sync);
      r.append(a, el("span", null, "→"), b, x);
      table.append(r);
    };
    for (const [a, b] of rows) addRow(a, b);
    const add = el("button", "small", "+ pair");
    add.addEventListener("click", () => addRow());
    body.append(el("p", "muted", `Output of '${edge.from}' → input of '${edge.to}' ('result.field' reaches into a dict output).`), dl, table, add);
    if (!initial) sync();
  }
}
