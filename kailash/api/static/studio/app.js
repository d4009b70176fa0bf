// Kailash Studio: wires the palette, canvas, inspector and runner to the gateway.
//
// This module owns the page's behaviour: the API-key prompt, live validation (POST
// /validate, debounced, stale answers dropped), saving, opening and importing
// workflows, the run dialog (the run itself is run.js) and the export dialog.

import { Api, ApiError, asProblem, problemText } from "./api.js";
import { Canvas } from "./canvas.js";
import { EXPORTERS } from "./export.js";
import { History } from "./history.js";
import { Inspector } from "./inspector.js";
import { Model } from "./model.js";
import { Palette } from "./palette.js";
import { Runner } from "./run.js";
import { buildRunForm, readRunForm } from "./runform.js";
import { RunsPanel } from "./runs.js";
import { SchedulesPanel } from "./schedules.js";

const $ = (sel) => document.querySelector(sel);
const api = new Api("");
const model = new Model();
let validateTimer = null;
let validateSeq = 0;
let lastValidation = { valid: null, problems: [] };

// -- messages ------------------------------------------------------------------------------
function toast(text, kind = "info", ms = kind === "error" ? 8000 : 3500) {
  const t = document.createElement("div");
  t.className = `toast ${kind}`;
  t.textContent = text;
  $("#toasts").append(t);
  setTimeout(() => t.remove(), ms);
}

// -- the API key ---------------------------------------------------------------------------
function askKey(reason = "", refused = false) {
  const dlg = $("#key-dialog");
  $("#key-reason").textContent = reason;
  $("#key-reason").className = refused ? "error-text" : "muted";
  $("#key-input").value = api.key;
  if (!dlg.open) dlg.showModal();
  $("#key-input").focus();
}

$("#key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  api.key = $("#key-input").value.trim();
  $("#key-dialog").close();
  updateKeyButton();
  scheduleValidate(0);
  toast(api.key ? "API key saved in this browser" : "API key cleared");
  if (api.key) openServedWorkflow();
});

// A gateway serving workflows registered in code (`kailash serve flow.py`): when the
// Studio is still empty, open the one it serves (the first, if it serves several).
async function openServedWorkflow() {
  if (model.nodes.size || dirty || $("#open-dialog").open) return;
  let items;
  try {
    const res = await api.request("GET", "/workflows", { quiet: true });
    items = Array.isArray(res) ? res : res.workflows || [];
  } catch {
    return;
  }
  const served = items.filter((w) => w && w.source === "registered");
  // not when the user has started something meanwhile (opened the Open dialog, added a node)
  if (served.length && !model.nodes.size && !dirty && !$("#open-dialog").open) await openWorkflow(served[0].name);
}
$("#key-cancel").addEventListener("click", () => $("#key-dialog").close());
$("#btn-key").addEventListener("click", () => askKey());
api.onUnauthorized = (err) => askKey(`The gateway refused the request: ${err.message}`, true);

function updateKeyButton() {
  $("#btn-key").classList.toggle("missing", !api.key);
  $("#btn-key").title = api.key ? "API key set (click to change)" : "No API key yet: click to enter one";
}

// -- building blocks -------------------------------------------------------------------------
const inspector = new Inspector($("#inspector"), model, {
  onDelete: (sel) => removeSelection(sel),
  onMessage: toast,
});

const canvas = new Canvas($("#canvas"), model, {
  onSelect: (sel) => inspector.show(sel),
  onDropType: (type, x, y) => addNode(type, x, y),
  onConnect: (from, to) => {
    const err = model.connect(from, to);
    if (err) toast(err, "error");
  },
  onMessage: toast,
});

// -- the view: zoom, fit, minimap, undo/redo -------------------------------------------------
canvas.attachMinimap($("#minimap"));
canvas.onZoom = (z) => { $("#zoom-level").textContent = `${Math.round(z * 100)}%`; };
$("#btn-zoom-in").addEventListener("click", () => canvas.setZoom(canvas.zoom * 1.2));
$("#btn-zoom-out").addEventListener("click", () => canvas.setZoom(canvas.zoom / 1.2));
$("#zoom-level").addEventListener("click", () => canvas.setZoom(1));
$("#btn-fit").addEventListener("click", () => canvas.fit());
$("#btn-minimap").addEventListener("click", () => {
  const shown = $("#minimap").classList.toggle("off");
  $("#minimap").style.display = shown ? "none" : "";
  $("#btn-minimap").classList.toggle("active", !shown);
  canvas.drawMinimap();
});
const undoHistory = new History(model, {
  onChange: (h) => {
    $("#btn-undo").disabled = !h.canUndo;
    $("#btn-redo").disabled = !h.canRedo;
  },
});
model.onChange(() => { $("#btn-undo").disabled = false; }); // a change settling can be undone at once
function undo() { if (!undoHistory.undo()) toast("Nothing to undo"); }
function redo() { if (!undoHistory.redo()) toast("Nothing to redo"); }
$("#btn-undo").addEventListener("click", undo);
$("#btn-redo").addEventListener("click", redo);
document.addEventListener("keydown", (e) => {
  if (e.target.closest("input, textarea, select, dialog")) return;
  const mod = e.ctrlKey || e.metaKey;
  const key = e.key.toLowerCase();
  if (mod && key === "z") { e.preventDefault(); if (e.shiftKey) redo(); else undo(); }
  else if (mod && key === "y") { e.preventDefault(); redo(); }
  else if (mod && (key === "=" || key === "+")) { e.preventDefault(); canvas.setZoom(canvas.zoom * 1.2); }
  else if (mod && key === "-") { e.preventDefault(); canvas.setZoom(canvas.zoom / 1.2); }
  else if (mod && key === "0") { e.preventDefault(); canvas.setZoom(1); }
  else if (e.shiftKey && e.code === "Digit1") { e.preventDefault(); canvas.fit(); }
});

const palette = new Palette($("#palette-list"), $("#palette-search"), {
  onShow: (type) => { canvas.select(null); inspector.show({ kind: "type", type }); },
  onAdd: (type) => {
    const n = model.nodes.size;
    addNode(type, 40 + (n % 4) * 260, 40 + Math.floor(n / 4) * 170);
  },
});

function addNode(type, x, y) {
  const node = model.addNode(type, Math.max(0, x), Math.max(0, y));
  canvas.select({ kind: "node", id: node.id });
}

function removeSelection(sel) {
  if (sel?.kind === "node") model.removeNode(sel.id);
  else if (sel?.kind === "edge") model.removeEdge(sel.edge);
  canvas.select(null);
}

document.addEventListener("keydown", (e) => {
  if (!["Delete", "Backspace"].includes(e.key)) return;
  if (e.target.closest("input, textarea, select, dialog")) return;
  if (canvas.selected) {
    e.preventDefault();
    removeSelection(canvas.selected);
  }
});

model.onChange((what, detail) => {
  if (what === "move") { // positions are saved too, but do not change validity
    if (!dirty) markDirty();
    return;
  }
  if (detail?.renamed) {
    const [oldId, newId] = detail.renamed;
    if (canvas.selected?.kind === "node" && canvas.selected.id === oldId) canvas.selected = { kind: "node", id: newId };
    if (inspector.selection?.kind === "node" && inspector.selection.id === oldId) inspector.selection = { kind: "node", id: newId };
    canvas.renameStatus(oldId, newId);
  }
  if (what === "graph" || what === "reset" || what === "config") {
    canvas.render();
    const sel = inspector.selection;
    const stale = (sel?.kind === "node" && !model.nodes.has(sel.id)) || (sel?.kind === "edge" && !model.edges.includes(sel.edge));
    if (what === "reset" || stale || !sel) inspector.show(what === "reset" ? null : canvas.selected);
  }
  if (what === "reset") {
    canvas.clearStatus();
    $("#wf-title").value = model.name;
  }
  if (what === "meta" && document.activeElement !== $("#wf-title")) $("#wf-title").value = model.name;
  if (what === "meta" && !inspector.selection && !$("#inspector").contains(document.activeElement)) inspector.render();
  markDirty();
  scheduleValidate();
});

// The gateway stores workflows by name: letters, digits, '_', '.', '-'.
function cleanName(text) {
  return text.trim().replace(/[^A-Za-z0-9_.-]+/g, "_").replace(/^[^A-Za-z0-9]+/, "").slice(0, 128) || "untitled";
}
$("#wf-title").addEventListener("input", () => {
  model.name = cleanName($("#wf-title").value);
  model.changed("meta");
});
$("#wf-title").addEventListener("change", () => { $("#wf-title").value = model.name; });

let dirty = false;
function markDirty() {
  dirty = true;
  $("#save-state").textContent = "unsaved changes";
}

// -- live validation -------------------------------------------------------------------------
function scheduleValidate(delay = 250) {
  clearTimeout(validateTimer);
  validateSeq++; // an answer still on its way is about an older graph: drop it
  lastValidation = { ...lastValidation, warnings: null };
  setValidation("pending", "Checking…");
  validateTimer = setTimeout(validateNow, delay);
}

function setValidation(state, text, title = "") {
  const badge = $("#validation");
  badge.dataset.state = state;
  badge.textContent = text;
  badge.title = title;
}

async function validateNow() {
  const seq = ++validateSeq;
  if (!model.nodes.size) {
    applyProblems([]);
    canvas.setNeeds({});
    setValidation("empty", "Empty workflow");
    return;
  }
  try {
    const res = await api.validate(model.toDict());
    if (seq !== validateSeq) return;
    const problems = res.problems || [];
    lastValidation = { valid: !!res.valid && !problems.length, problems, warnings: res.warnings || null };
    applyProblems(problems);
    canvas.setNeeds(inputsFromWarnings(res.warnings));
    if (lastValidation.valid) setValidation("valid", "✓ Valid");
    else setValidation("invalid", `✗ ${problems.length} problem${problems.length === 1 ? "" : "s"}`, problems.map(problemText).join("\n"));
  } catch (err) {
    if (seq !== validateSeq) return;
    if (err instanceof ApiError && (err.status === 422 || err.status === 400)) {
      const problems = err.rawProblems;
      lastValidation = { valid: false, problems };
      applyProblems(problems);
      setValidation("invalid", `✗ ${problems.length} problem${problems.length === 1 ? "" : "s"}`, problems.map(problemText).join("\n"));
    } else {
      setValidation("error", err.status === 401 ? "API key needed" : "Cannot validate", err.message);
    }
  }
}

// Problems come as {message, node_id, parameter, connection}: the node, parameter and
// connection they concern are read from those fields, never from the wording.
function applyProblems(problems) {
  const byNode = new Map();
  const edges = new Set();
  const general = [];
  for (const raw of problems) {
    const p = asProblem(raw);
    if (p.connection) edges.add(`${p.connection[0]}->${p.connection[1]}`);
    if (p.node_id && model.nodes.has(p.node_id)) {
      if (!byNode.has(p.node_id)) byNode.set(p.node_id, []);
      byNode.get(p.node_id).push(p);
    } else {
      general.push(p);
    }
  }
  const texts = new Map([...byNode].map(([id, list]) => [id, list.map((p) => p.message)]));
  canvas.setProblems(texts, edges);
  inspector.problems = { byNode, general };
  const active = document.activeElement;
  if (!active || !$("#inspector").contains(active)) inspector.render();
  else refreshFieldProblems(byNode);
}

// While the user types in the inspector, update only the problem lines, not the form.
function refreshFieldProblems(byNode) {
  const sel = inspector.selection;
  if (sel?.kind !== "node") return;
  const probs = byNode.get(sel.id) || [];
  for (const field of document.querySelectorAll("#inspector .field[data-field]")) {
    const name = field.dataset.field;
    const mine = probs.filter((p) => p.parameter === name);
    if (field.classList.contains("local-error")) continue;
    field.classList.toggle("has-problem", mine.length > 0);
    field.querySelector(".field-problem").textContent = mine.map((p) => p.message).join("\n");
  }
}

// -- saving, opening, importing ----------------------------------------------------------------
// What the server holds for the open workflow: its source ("registered" in code, "uploaded",
// or null for a new one) and the key of its meaning (the graph without the Studio's layout).
// A change that only moves nodes never needs a save to run: a registered workflow keeps its
// layout in this browser, an uploaded one saves it when it can.
let source = null;
let savedKey = null;
let registeredName = null;
const LAYOUT_STORAGE = "kailash.studio.layout.";

function semanticKey() {
  const d = model.toDict();
  delete d.metadata.studio;
  delete d.name;
  return JSON.stringify(d);
}
function layoutOnly() { return savedKey !== null && semanticKey() === savedKey; }

function keepLayoutLocally(name) {
  const positions = model.toDict().metadata.studio.positions;
  try { localStorage.setItem(LAYOUT_STORAGE + name, JSON.stringify(positions)); } catch { /* private mode */ }
}
function restoreLocalLayout(name) {
  let positions = null;
  try { positions = JSON.parse(localStorage.getItem(LAYOUT_STORAGE + name) || "null"); } catch { positions = null; }
  if (!positions || typeof positions !== "object") return false;
  let moved = false;
  for (const [id, p] of Object.entries(positions)) {
    const n = model.nodes.get(id);
    if (n && Array.isArray(p) && p.length === 2) { n.x = p[0]; n.y = p[1]; moved = true; }
  }
  if (moved) model.changed("graph");
  return moved;
}

// Ask for a new name for a copy of a workflow registered in code; null if the user cancels.
function askSaveAs(original, why) {
  const dlg = $("#saveas-dialog");
  $("#saveas-reason").textContent = why;
  $("#saveas-name").value = `${original}_copy`;
  dlg.showModal();
  $("#saveas-name").select();
  return new Promise((resolve) => {
    const done = (value) => {
      $("#saveas-form").removeEventListener("submit", onSubmit);
      $("#saveas-cancel").removeEventListener("click", onCancel);
      dlg.close();
      resolve(value);
    };
    const onSubmit = (e) => { e.preventDefault(); done(cleanName($("#saveas-name").value)); };
    const onCancel = () => done(null);
    $("#saveas-form").addEventListener("submit", onSubmit);
    $("#saveas-cancel").addEventListener("click", onCancel);
  });
}

async function save({ quiet = false, forRun = false } = {}) {
  if (source === "registered" && model.name === registeredName) {
    if (layoutOnly()) { // nothing the server runs changed: keep the arrangement here
      keepLayoutLocally(model.name);
      dirty = false;
      $("#save-state").textContent = `layout kept in this browser ('${model.name}' is registered in code)`;
      if (!quiet) toast(`'${model.name}' is registered in code: its layout is kept in this browser`, "ok");
      return;
    }
    const name = await askSaveAs(model.name, `'${model.name}' is registered in code by the gateway, so your changes are saved as a new workflow.`);
    if (!name) {
      toast("Not saved: the changes stay in the Studio only", "info");
      throw new Error("save cancelled");
    }
    model.name = name;
    $("#wf-title").value = name;
  } else if (forRun && layoutOnly()) { // only moved: save if the server takes it, run anyway
    try { await api.saveWorkflow(model.name, model.toDict()); } catch { /* the layout is not worth a failed run */ }
    dirty = false;
    return;
  }
  const name = model.name;
  try {
    await api.saveWorkflow(name, model.toDict());
  } catch (err) {
    if (err.status === 409 && err.body && (err.body.code === "workflow_registered" || err.body.error?.code === "workflow_registered")) {
      const other = await askSaveAs(name, `A workflow registered in code is already called '${name}'; save yours under another name.`);
      if (other) {
        model.name = other;
        $("#wf-title").value = other;
        return save({ quiet, forRun });
      }
    }
    if (err.status === 422 || err.status === 400) applyProblems(err.rawProblems);
    toast(`Could not save '${name}': ${err.message}`, "error");
    throw err;
  }
  dirty = false;
  source = "uploaded";
  registeredName = null;
  savedKey = semanticKey();
  $("#save-state").textContent = `saved to the server as '${name}'`;
  if (!quiet) toast(`Saved '${name}' to the server`, "ok");
}

$("#btn-save").addEventListener("click", () => save().catch(() => {}));

$("#btn-new").addEventListener("click", () => {
  if (model.nodes.size && dirty && !confirm("Discard the current workflow?")) return;
  model.reset("untitled");
  source = savedKey = registeredName = null;
  showMcp(null);
  runner.reset();
});

$("#btn-arrange").addEventListener("click", () => { model.layout(); model.changed("graph"); canvas.fit(); });

$("#btn-open").addEventListener("click", async () => {
  const list = $("#open-list");
  list.replaceChildren();
  $("#open-dialog").showModal();
  try {
    const res = await api.listWorkflows();
    const items = Array.isArray(res) ? res : res.workflows || [];
    if (!items.length) list.append(Object.assign(document.createElement("li"), { textContent: "No workflows on the server yet." }));
    for (const item of items) {
      const name = typeof item === "string" ? item : item.name;
      const li = document.createElement("li");
      const b = document.createElement("button");
      b.textContent = name;
      b.dataset.workflow = name;
      b.addEventListener("click", () => openWorkflow(name));
      const runs = Object.assign(document.createElement("button"), { className: "small link", textContent: "runs", title: `Runs of '${name}'` });
      runs.dataset.runsOf = name;
      runs.addEventListener("click", () => { $("#open-dialog").close(); runsPanel.open({ workflow: name }); });
      li.append(b, " ", runs);
      if (item.description) li.append(Object.assign(document.createElement("span"), { className: "muted", textContent: ` ${item.description}` }));
      list.append(li);
    }
  } catch (err) {
    list.append(Object.assign(document.createElement("li"), { className: "error-text", textContent: err.message }));
  }
});
$("#open-close").addEventListener("click", () => $("#open-dialog").close());

// GET /workflows/{name} describes the workflow; its "definition" is the saved form.
// POST /workflows answers {name, workflow: <that description>}.
function graphOf(body) {
  if (!body || typeof body !== "object") return body;
  if (body.definition && typeof body.definition === "object") return body.definition;
  for (const key of ["workflow", "graph"]) {
    if (body[key] && typeof body[key] === "object") return graphOf(body[key]);
  }
  return body;
}

async function openWorkflow(name) {
  try {
    const body = await api.getWorkflow(name);
    model.load(graphOf(body));
    source = body.source || "uploaded";
    registeredName = source === "registered" ? model.name : null;
    savedKey = semanticKey();
    if (source === "registered") restoreLocalLayout(model.name);
    undoHistory.clear();
    showMcp(body);
    canvas.fit();
    $("#open-dialog").close();
    runner.reset();
    dirty = false;
    $("#save-state").textContent = `opened '${model.name}' from the server`;
    toast(`Opened '${model.name}'`, "ok");
  } catch (err) {
    toast(`Could not open '${name}': ${err.message}`, "error", 8000);
  }
}

$("#btn-import").addEventListener("click", () => $("#import-file").click());
$("#import-file").addEventListener("change", async (e) => {
  const file = e.target.files[0];
  e.target.value = "";
  if (file) await importFile(file);
});

async function importFile(file) {
  const text = await file.text();
  try {
    if (/\.json$/i.test(file.name) || text.trimStart().startsWith("{")) {
      model.load(JSON.parse(text));
      source = savedKey = registeredName = null;
      showMcp(null);
      toast(`Imported '${model.name}' from ${file.name}`, "ok");
    } else {
      // YAML is read by the server (safely); it stores the workflow and hands back the graph.
      const res = await api.importFile(file);
      const name = (res && (res.name || res.workflow?.name)) || /^name:\s*["']?([^"'\n]+)/m.exec(text)?.[1]?.trim();
      const body = res && res.workflow && typeof res.workflow === "object" ? res : await api.getWorkflow(name);
      model.load(graphOf(body));
      source = "uploaded";
      registeredName = null;
      savedKey = semanticKey();
      showMcp(null);
      dirty = false;
      $("#save-state").textContent = `imported and saved as '${model.name}'`;
      toast(`Imported '${model.name}' from ${file.name} (saved on the server)`, "ok");
    }
    runner.reset();
    canvas.fit();
  } catch (err) {
    const lines = err instanceof ApiError ? err.problems : [err.message];
    toast(`Could not import ${file.name}:\n${lines.join("\n")}`, "error", 10000);
  }
}

// Dropping a .yaml/.json file on the canvas imports it too.
$("#canvas").addEventListener("drop", (e) => {
  const file = e.dataTransfer.files && e.dataTransfer.files[0];
  if (file) {
    e.preventDefault();
    importFile(file);
  }
});
$("#canvas").addEventListener("dragover", (e) => {
  if ([...e.dataTransfer.types].includes("Files")) e.preventDefault();
});

// -- export ------------------------------------------------------------------------------
let exportFormat = "python";
function renderExport() {
  const ex = EXPORTERS[exportFormat];
  $("#export-text").value = ex.render(model.toDict());
  for (const b of document.querySelectorAll("#export-dialog [data-format]")) b.classList.toggle("active", b.dataset.format === exportFormat);
  $("#export-file").textContent = `${safeFileName(model.name)}.${ex.ext}`;
}
function safeFileName(name) { return name.replace(/[^A-Za-z0-9_.-]+/g, "_") || "workflow"; }

$("#btn-export").addEventListener("click", () => { renderExport(); $("#export-dialog").showModal(); });
for (const b of document.querySelectorAll("#export-dialog [data-format]")) {
  b.addEventListener("click", () => { exportFormat = b.dataset.format; renderExport(); });
}
$("#export-download").addEventListener("click", () => {
  const ex = EXPORTERS[exportFormat];
  const blob = new Blob([$("#export-text").value], { type: ex.mime });
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = `${safeFileName(model.name)}.${ex.ext}`;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
});
$("#export-copy").addEventListener("click", async () => {
  try {
    await navigator.clipboard.writeText($("#export-text").value);
    toast("Copied", "ok");
  } catch {
    $("#export-text").select();
    document.execCommand("copy");
  }
});
$("#export-close").addEventListener("click", () => $("#export-dialog").close());

// -- running -------------------------------------------------------------------------------
// Inputs the run must supply: the server's warnings ("node 'x' needs parameter 'p' at
// run time") when it gave them for the current graph, else the Studio's own estimate.
function neededInputs() {
  const warnings = lastValidation.warnings;
  return Array.isArray(warnings) ? inputsFromWarnings(warnings) : model.runtimeInputs();
}

function inputsFromWarnings(warnings) {
  const out = new Map();
  for (const w of warnings) {
    const { node_id: node, parameter: param } = asProblem(w);
    if (!node || !param || !model.nodes.has(node)) continue;
    const desc = model.describe(model.nodes.get(node).type);
    if (!out.has(node)) out.set(node, []);
    out.get(node).push(desc?.parameters?.find((p) => p.name === param) || { name: param });
  }
  return Object.fromEntries(out);
}

let runValues = {}; // what the form held last time, per workflow: {node_id: {param: value}}
$("#btn-run").addEventListener("click", () => {
  const inputs = neededInputs();
  buildRunForm($("#run-fields"), inputs, runValues);
  const area = $("#run-params");
  if (!area.value.trim()) area.value = "{}";
  $("#run-json").open = !Object.keys(inputs).length && area.value.trim() !== "{}";
  $("#run-error").textContent = "";
  $("#run-needed").textContent = Object.keys(inputs).length
    ? "Inputs this run must supply:"
    : "Every required parameter is set. Override any parameter below as JSON if you like.";
  $("#run-dialog").showModal();
  $("#run-fields [data-param]")?.focus();
});
$("#run-cancel").addEventListener("click", () => $("#run-dialog").close());
$("#run-form").addEventListener("submit", (e) => {
  e.preventDefault();
  let params;
  try {
    params = JSON.parse($("#run-params").value || "{}");
    if (!params || typeof params !== "object" || Array.isArray(params)) throw new Error("give an object: {\"node_id\": {\"param\": value}}");
  } catch (err) {
    $("#run-json").open = true;
    $("#run-error").textContent = `Parameters are not valid JSON: ${err.message}`;
    return;
  }
  const form = readRunForm($("#run-fields"));
  if (form.error) {
    $("#run-error").textContent = form.error;
    form.input.focus();
    return;
  }
  runValues = form.params;
  for (const [node, values] of Object.entries(form.params)) {
    params[node] = { ...(params[node] && typeof params[node] === "object" ? params[node] : {}), ...values };
  }
  $("#run-dialog").close();
  runner.run(params);
});

const runner = new Runner(api, model, canvas, inspector, {
  save: (opts) => save({ ...opts, forRun: true }),
  isDirty: () => dirty,
  applyProblems,
});

new SchedulesPanel(api, toast, () => model.name);
const runsPanel = new RunsPanel(api, { toast, workflowName: () => model.name });
$("#run-open-detail").addEventListener("click", () => {
  const id = $("#run-open-detail").dataset.runId;
  if (id) runsPanel.open({ workflow: model.name, runId: id });
});

// -- MCP servers ---------------------------------------------------------------------------
let mcpWorkflow = null;
function showMcp(body) {
  const servers = (body && body.mcp_servers) || [];
  mcpWorkflow = servers.length ? body.name : null;
  $("#btn-mcp").hidden = !servers.length;
  $("#btn-mcp").textContent = `MCP (${servers.length})`;
}
async function refreshMcp() {
  const list = $("#mcp-list");
  list.replaceChildren(Object.assign(document.createElement("p"), { className: "muted", textContent: "Asking the servers…" }));
  let res;
  try {
    res = await api.get(`/workflows/${encodeURIComponent(mcpWorkflow)}/mcp`);
  } catch (err) {
    list.replaceChildren(Object.assign(document.createElement("p"), { className: "error-text", textContent: err.message }));
    return;
  }
  const items = [];
  for (const srv of res.servers || []) {
    const box = document.createElement("section");
    box.className = "mcp-server";
    box.dataset.server = srv.name;
    box.dataset.reachable = String(!!srv.reachable);
    const head = document.createElement("h4");
    const dot = Object.assign(document.createElement("span"), { className: `mcp-dot ${srv.reachable ? "ok" : "bad"}`, textContent: "●" });
    head.append(dot, ` ${srv.name} `, Object.assign(document.createElement("span"), {
      className: "muted small", textContent: `${srv.transport || ""} ${srv.reachable ? `reachable, ${srv.tools.length} tool${srv.tools.length === 1 ? "" : "s"}` : "unreachable"}` }));
    box.append(head);
    if (srv.error) box.append(Object.assign(document.createElement("p"), { className: "error-text small", textContent: srv.error }));
    if (srv.tools?.length) {
      const ul = document.createElement("ul");
      for (const t of srv.tools) {
        const li = document.createElement("li");
        li.dataset.tool = t.name;
        li.append(Object.assign(document.createElement("code"), { textContent: t.name }));
        if (t.description) li.append(Object.assign(document.createElement("span"), { className: "muted", textContent: ` ${t.description}` }));
        ul.append(li);
      }
      box.append(ul);
    }
    items.push(box);
  }
  list.replaceChildren(...items);
}
$("#btn-mcp").addEventListener("click", () => {
  $("#mcp-workflow").textContent = mcpWorkflow;
  $("#mcp-dialog").showModal();
  refreshMcp();
});
$("#mcp-refresh").addEventListener("click", refreshMcp);
$("#mcp-close").addEventListener("click", () => $("#mcp-dialog").close());

// -- start ---------------------------------------------------------------------------------
async function start() {
  updateKeyButton();
  try {
    const types = await api.nodes();
    const list = Array.isArray(types) ? types : types.nodes || [];
    model.catalog = new Map(list.map((t) => [t.name, t]));
    palette.load(list);
    $("#palette-count").textContent = `${list.length} node types`;
  } catch (err) {
    toast(`Could not load the node catalog: ${err.message}`, "error", 10000);
  }
  model.reset("untitled");
  dirty = false;
  $("#save-state").textContent = "new workflow";
  if (!api.key) {
    // A gateway started without authentication needs no key: ask only when it says so.
    try {
      await api.request("GET", "/workflows", { quiet: true });
    } catch (err) {
      if (err.status === 401) askKey("Workflows and runs need an API key (one of the gateway's KAILASH_API_KEYS).");
    }
  }
  if (api.key || !$("#key-dialog").open) await openServedWorkflow();
  if (api.key) runsPanel.openFromHash(); // a link to the Runs page or to one run
  document.body.dataset.ready = "1";
}

window.addEventListener("resize", () => canvas.resizeStage());
window.kailashStudio = { model, canvas, inspector, api, runsPanel, history: undoHistory }; // for debugging from the console
start();
