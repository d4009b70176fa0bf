// The Runs page: run history with filters and paging, and one run in detail.
//
// This module owns the runs dialog only. The list is GET /runs (filters workflow, status,
// since; a page at a time through next_cursor); the detail is GET /runs/{id}: status,
// timings, a per-node timeline (Gantt), what each node printed and logged and its agents'
// model and tool calls, the error and the results. "Re-run from the failed node" is
// POST /runs/{id}/resume: the nodes the run finished are reused, the failed one and what
// follows run again. Text from the server is set with textContent, never as HTML.

const $ = (sel) => document.querySelector(sel);
const PAGE = 25;

function el(tag, props = {}, ...children) {
  const e = Object.assign(document.createElement(tag), props);
  for (const c of children) if (c != null) e.append(c);
  return e;
}

export function fmtDuration(seconds) {
  if (seconds == null) return "";
  if (seconds < 1) return `${(seconds * 1000).toFixed(seconds < 0.01 ? 2 : 1)} ms`;
  if (seconds < 120) return `${seconds.toFixed(2)} s`;
  return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
}

function fmtTime(ts) {
  return ts ? new Date(ts * 1000).toLocaleString([], { hour12: false }) : "";
}

export class RunsPanel {
  // hooks: toast(text, kind), workflowName() (the workflow open in the Studio)
  constructor(api, hooks) {
    this.api = api;
    this.hooks = hooks;
    this.cursor = null;
    this.current = null; // the run shown in detail
    this.pollTimer = null;
    $("#btn-runs").addEventListener("click", () => this.open());
    $("#runs-close").addEventListener("click", () => this.close());
    $("#runs-filter").addEventListener("submit", (e) => { e.preventDefault(); this.refresh(); });
    $("#runs-status").addEventListener("change", () => this.refresh());
    $("#runs-this").addEventListener("click", () => {
      $("#runs-workflow").value = this.hooks.workflowName() || "";
      this.refresh();
    });
    $("#runs-more").addEventListener("click", () => this.loadPage());
    $("#run-detail-resume").addEventListener("click", () => this.resume());
    $("#run-detail-back").addEventListener("click", () => this.showList());
    $("#runs-dialog").addEventListener("close", () => { clearTimeout(this.pollTimer); this.setHash(""); });
  }

  // Open the page: all runs, or those of `workflow`; with `runId`, that run's detail.
  async open({ workflow = null, runId = null } = {}) {
    if (workflow !== null) $("#runs-workflow").value = workflow;
    const dlg = $("#runs-dialog");
    if (!dlg.open) dlg.showModal();
    await this.refresh();
    if (runId) await this.show(runId);
  }

  close() {
    clearTimeout(this.pollTimer);
    $("#runs-dialog").close();
    this.setHash("");
  }

  // The page's address says what it shows (#runs, #runs?workflow=x, #runs/RUN_ID): a link
  // to a run or to a workflow's runs opens them (see openFromHash).
  setHash(hash) {
    const url = `${location.pathname}${location.search}${hash}`;
    if (location.hash !== hash) history.replaceState(null, "", url);
  }

  openFromHash() {
    const m = /^#runs(?:\/([0-9A-Za-z_-]+))?(?:\?workflow=([^&]*))?$/.exec(location.hash);
    if (!m) return false;
    this.open({ workflow: m[2] ? decodeURIComponent(m[2]) : null, runId: m[1] || null });
    return true;
  }

  filters() {
    const q = { limit: String(PAGE) };
    const wf = $("#runs-workflow").value.trim();
    const status = $("#runs-status").value;
    const since = $("#runs-since").value;
    if (wf) q.workflow = wf;
    if (status) q.status = status;
    if (since) q.since = new Date(since).toISOString();
    return q;
  }

  async refresh() {
    const wf = $("#runs-workflow").value.trim();
    this.setHash(wf ? `#runs?workflow=${encodeURIComponent(wf)}` : "#runs");
    this.cursor = null;
    $("#runs-list").replaceChildren();
    $("#runs-error").textContent = "";
    this.showList();
    await this.loadPage();
  }

  async loadPage() {
    const query = this.filters();
    if (this.cursor) query.cursor = this.cursor;
    let page;
    try {
      page = await this.api.get("/runs", { query });
    } catch (err) {
      $("#runs-error").textContent = err.message;
      return;
    }
    const body = $("#runs-list");
    for (const r of page.runs || []) body.append(this.row(r));
    if (!body.children.length) body.append(el("tr", {}, el("td", { colSpan: 5, className: "muted", textContent: "No runs match." })));
    this.cursor = page.next_cursor || null;
    $("#runs-more").hidden = !this.cursor;
    $("#runs-count").textContent = `${body.querySelectorAll("tr[data-run-id]").length} shown${this.cursor ? ", more below" : ""}`;
  }

  row(r) {
    const tr = el("tr");
    tr.dataset.runId = r.run_id;
    tr.dataset.status = r.status;
    tr.append(
      el("td", { className: `status status-${r.status}`, textContent: r.status }),
      el("td", { textContent: r.workflow }),
      el("td", { textContent: fmtTime(r.started_at) }),
      el("td", { className: "num", textContent: fmtDuration(r.duration) }),
      el("td", { className: "err", textContent: r.error ? `${r.error_node ? r.error_node + ": " : ""}${r.error}` : "" }),
    );
    tr.title = `run ${r.run_id}`;
    tr.addEventListener("click", () => this.show(r.run_id));
    return tr;
  }

  showList() {
    clearTimeout(this.pollTimer);
    $("#runs-listview").hidden = false;
    $("#run-detail").hidden = true;
    if (this.current) {
      const wf = $("#runs-workflow").value.trim();
      this.setHash(wf ? `#runs?workflow=${encodeURIComponent(wf)}` : "#runs");
    }
    this.current = null;
  }

  async show(runId) {
    clearTimeout(this.pollTimer);
    let rec;
    try {
      rec = await this.api.getRun(runId);
    } catch (err) {
      this.hooks.toast(`Could not read run ${runId}: ${err.message}`, "error");
      return;
    }
    this.current = rec;
    this.setHash(`#runs/${rec.run_id}`);
    $("#runs-listview").hidden = true;
    $("#run-detail").hidden = false;
    this.renderDetail(rec);
    if (rec.status === "running" || rec.status === "queued") {
      this.pollTimer = setTimeout(() => { if (this.current?.run_id === runId) this.show(runId); }, 400);
    }
  }

  renderDetail(rec) {
    const detail = $("#run-detail");
    detail.dataset.runId = rec.run_id;
    detail.dataset.status = rec.status;
    const err = rec.error && typeof rec.error === "object" ? rec.error : rec.error ? { message: rec.error, node_id: rec.error_node } : null;
    const parent = rec.parent_run_id;
    const head = $("#run-detail-head");
    head.replaceChildren(
      el("span", { className: `status status-${rec.status}`, textContent: rec.status }),
      el("strong", { textContent: ` ${rec.workflow} ` }),
      el("span", { className: "muted mono", textContent: rec.run_id }),
      el("span", { className: "muted", textContent: `  started ${fmtTime(rec.started_at)}${rec.duration != null ? `, took ${fmtDuration(rec.duration)}` : ""}` }),
    );
    if (parent) {
      const a = el("a", { href: "#", className: "parent-link", textContent: ` (re-run of ${parent.slice(0, 8)}…)` });
      a.addEventListener("click", (e) => { e.preventDefault(); this.show(parent); });
      head.append(a);
    }
    $("#run-detail-error").textContent = err ? `Failed${err.node_id ? ` at '${err.node_id}'` : ""}: ${err.message}` : "";
    const resumable = rec.status === "failed" || rec.status === "interrupted";
    $("#run-detail-resume").hidden = !resumable;
    $("#run-detail-resume").textContent = err?.node_id ? `↻ Re-run from '${err.node_id}'` : "↻ Re-run from the failed node";
    this.renderGantt(rec);
    this.renderNodes(rec);
    const results = rec.results ?? rec.outputs;
    $("#run-detail-results").textContent = results ? JSON.stringify(results, null, 2) : "(no outputs kept for this run)";
  }

  // One bar per node, placed by its start and length within the run.
  renderGantt(rec) {
    const box = $("#run-gantt");
    const nodes = (rec.nodes || []).filter((n) => n.node_id || n.id);
    const t0 = rec.started_at || Math.min(...nodes.map((n) => n.started_at || Infinity));
    const ends = nodes.map((n) => (n.started_at ? n.started_at + (n.duration || 0) : 0));
    const total = Math.max(rec.duration || 0, ...ends.map((e) => e - t0), 1e-6);
    const rows = nodes.map((n) => {
      const id = n.node_id || n.id;
      const start = n.started_at ? Math.max(0, n.started_at - t0) : null;
      const bar = el("div", { className: `gantt-bar status-${n.status}` });
      if (start !== null) {
        bar.style.left = `${(start / total) * 100}%`;
        bar.style.width = `max(3px, ${((n.duration || 0) / total) * 100}%)`;
      } else {
        bar.classList.add("notrun");
      }
      bar.title = `${id}: ${n.status}${start !== null ? `, from +${fmtDuration(start)}` : ""}${n.duration != null ? `, ${fmtDuration(n.duration)}` : ""}`;
      const row = el("div", { className: "gantt-row" },
        el("div", { className: "gantt-label", textContent: id, title: id }),
        el("div", { className: "gantt-track" }, bar),
        el("div", { className: "gantt-dur", textContent: n.duration != null ? fmtDuration(n.duration) : n.status }));
      row.dataset.nodeId = id;
      row.dataset.status = n.status;
      return row;
    });
    const axis = el("div", { className: "gantt-row gantt-axis" }, el("div", { className: "gantt-label" }),
      el("div", { className: "gantt-track", textContent: `0 … ${fmtDuration(total)}` }), el("div", { className: "gantt-dur" }));
    box.replaceChildren(...rows, axis);
  }

  renderNodes(rec) {
    const output = rec.output || {};
    const calls = {};  // node id -> its agents' model and tool calls
    for (const c of rec.calls || []) (calls[c.node_id] ||= []).push(c);
    const body = $("#run-detail-nodes");
    body.replaceChildren();
    for (const n of rec.nodes || []) {
      const id = n.node_id || n.id;
      const tr = el("tr");
      tr.dataset.nodeId = id;
      const mine = calls[id] || [];
      tr.append(
        el("td", { className: "mono", textContent: id }),
        el("td", { className: `status status-${n.status}`, textContent: n.status }),
        el("td", { className: "num", textContent: fmtDuration(n.duration) }),
        el("td", {}, n.error ? el("div", { className: "error-text", textContent: n.error }) : null,
          output[id] ? el("pre", { className: "node-output mono", textContent: output[id] }) : null,
          mine.length ? el("ul", { className: "node-calls mono" }, ...mine.map((c) => el("li", {
            className: c.ok ? "" : "error-text", textContent: describeCall(c) }))) : null),
      );
      body.append(tr);
    }
  }

  async resume() {
    const rec = this.current;
    if (!rec) return;
    const btn = $("#run-detail-resume");
    btn.disabled = true;
    try {
      const started = await this.api.post(`/runs/${encodeURIComponent(rec.run_id)}/resume`, {});
      this.hooks.toast(`Re-running from the failed node (reusing ${started.reused?.length ?? 0} finished node${started.reused?.length === 1 ? "" : "s"})`, "ok");
      await this.show(started.run_id);
    } catch (err) {
      this.hooks.toast(`Could not re-run: ${err.message}`, "error");
    } finally {
      btn.disabled = false;
    }
  }
}

// One line for an agent's model or tool call (an entry of the run's `calls`).
function describeCall(c) {
  const took = c.latency_ms != null ? ` ${fmtDuration(c.latency_ms / 1000)}` : "";
  let text;
  if (c.event === "tool_call") {
    const args = JSON.stringify(c.arguments || {});
    text = `tool ${c.server}.${c.tool} ${args.length > 60 ? `${args.slice(0, 60)}…` : args}${took}`;
    if (c.outcome === "cached" || c.outcome === "rejected") text += ` (${c.outcome})`;
  } else {
    text = `model ${c.provider}/${c.model}${took}`;
    if (c.prompt_tokens != null || c.completion_tokens != null) text += ` (${c.prompt_tokens || 0}+${c.completion_tokens || 0} tokens)`;
  }
  return c.error ? `${text} failed: ${String(c.error).slice(0, 160)}` : text;
}
