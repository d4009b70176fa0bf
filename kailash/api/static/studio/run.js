// Running a workflow from the Studio and showing it live.
//
// This module owns the run panel and a run's life: save the canvas if it changed, start
// the run (?async=true), follow its events (node_started / node_completed / node_failed
// / node_skipped / run_completed / run_failed) and paint each node's status as they
// arrive, then read the run record for timings, errors and results. When the event
// stream is not available it polls GET /runs/{id} instead.

import { ApiError } from "./api.js";
import { pretty } from "./inspector.js";

const $ = (sel) => document.querySelector(sel);
const TERMINAL = new Set(["run_completed", "run_failed"]);

export class Runner {
  // hooks: save({quiet}) -> Promise, isDirty() -> bool, applyProblems(problems)
  constructor(api, model, canvas, inspector, hooks) {
    this.api = api;
    this.model = model;
    this.canvas = canvas;
    this.inspector = inspector;
    this.hooks = hooks;
    this.active = null; // {id, abort}
  }

  reset() {
    if (this.active) this.active.abort.abort();
    this.active = null;
    this.inspector.runtime = null;
    this.setStatus("", "No run yet.");
    $("#run-open-detail").hidden = true;
    $("#run-nodes").replaceChildren();
    $("#run-results").textContent = "";
    $("#run-log").replaceChildren();
  }

  log(text, kind = "") {
    const li = document.createElement("li");
    li.className = kind;
    li.textContent = `${new Date().toLocaleTimeString([], { hour12: false })}  ${text}`;
    $("#run-log").append(li);
    li.scrollIntoView({ block: "nearest" });
  }

  setStatus(status, text) {
    const summary = $("#run-summary");
    summary.dataset.runStatus = status;
    summary.textContent = text;
    summary.title = text;
    document.body.dataset.runStatus = status;
  }

  renderNodes(state) {
    const rows = [];
    for (const id of this.model.nodes.keys()) {
      const n = state.nodes[id] || { status: "pending" };
      const tr = document.createElement("tr");
      tr.dataset.nodeId = id;
      tr.dataset.status = n.status;
      const dur = n.duration != null ? `${(n.duration * 1000).toFixed(1)} ms` : "";
      for (const [cls, text] of [["id", id], [`status status-${n.status}`, n.status.replace("notrun", "not run")], ["dur", dur], ["err", n.error || ""]]) {
        const td = document.createElement("td");
        td.className = cls;
        td.textContent = text;
        tr.append(td);
      }
      tr.addEventListener("click", () => this.canvas.select({ kind: "node", id }));
      rows.push(tr);
    }
    $("#run-nodes").replaceChildren(...rows);
  }

  nodeStatus(state, id, status, extra = {}) {
    state.nodes[id] = { ...(state.nodes[id] || {}), status, ...extra };
    const detail = status === "completed" && extra.duration != null ? `${(extra.duration * 1000).toFixed(1)} ms`
      : status === "failed" ? (extra.error || "failed")
        : status === "notrun" ? "not run: the run stopped before it" : "";
    this.canvas.setStatus(id, status, detail);
    this.renderNodes(state);
  }

  async run(parameters) {
    this.reset();
    this.canvas.clearStatus();
    const dirty = this.hooks.isDirty();
    this.setStatus("starting", dirty ? "Saving and starting the run…" : "Starting the run…");
    if (dirty) { // the server runs what it holds; an unchanged one may be registered in code
      try {
        await this.hooks.save({ quiet: true });
      } catch {
        this.setStatus("failed", "The workflow could not be saved, so it did not run.");
        return;
      }
    }
    // nodes keyed by node id: no prototype, so an id like "constructor" is just an id
    const state = { id: null, nodes: Object.create(null), results: null, status: "running" };
    for (const id of this.model.nodes.keys()) this.nodeStatus(state, id, "pending");
    let started;
    try {
      started = await this.api.execute(this.model.name, parameters);
    } catch (err) {
      const lines = err instanceof ApiError ? err.problems : [err.message];
      if (err.status === 422 || err.status === 400) this.hooks.applyProblems(err.rawProblems);
      this.setStatus("failed", `The run did not start: ${lines.join("; ")}`);
      this.log(`refused: ${lines.join("; ")}`, "error");
      for (const id of this.model.nodes.keys()) this.canvas.setStatus(id, "idle");
      return;
    }
    state.id = started.run_id;
    const abort = new AbortController();
    this.active = { id: state.id, abort };
    this.inspector.runtime = state;
    this.setStatus("running", `Run ${state.id}: running…`);
    this.log(`run ${state.id} started`);
    if (started.status === "completed" || started.status === "failed") {
      state.results = started.results || null; // a server that ran it synchronously
    } else {
      await this.follow(state, abort.signal);
    }
    if (this.active?.id !== state.id) return; // a newer run replaced this one
    await this.finish(state);
  }

  async follow(state, signal) {
    let ended = false;
    try {
      await this.api.followRun(state.id, (ev) => {
        const id = ev.node_id;
        switch (ev.event) {
          case "node_started":
            this.nodeStatus(state, id, "running");
            this.log(`${id} started`);
            break;
          case "node_completed":
            this.nodeStatus(state, id, "completed", { duration: ev.duration });
            this.log(`${id} completed`, "ok");
            break;
          case "node_failed":
            this.nodeStatus(state, id, "failed", { error: ev.error });
            this.log(`${id} failed: ${ev.error || ""}`, "error");
            break;
          case "node_skipped":
            this.nodeStatus(state, id, "skipped");
            this.log(`${id} skipped (branch not taken)`);
            break;
          case "run_completed":
          case "run_failed":
            state.status = ev.event.slice(4);
            if (ev.results) state.results = ev.results;
            this.log(`run ${state.status}${ev.error ? `: ${ev.error}` : ""}`, state.status === "completed" ? "ok" : "error");
            break;
          default:
            break;
        }
        if (TERMINAL.has(ev.event)) {
          ended = true;
          return false;
        }
        return true;
      }, signal);
    } catch (err) {
      if (signal.aborted) return;
      this.log(`live events unavailable (${err.message}); polling the run instead`);
    }
    if (!ended && !signal.aborted) await this.poll(state, signal);
  }

  async poll(state, signal) {
    const deadline = Date.now() + 10 * 60 * 1000;
    while (!signal.aborted && Date.now() < deadline) {
      try {
        const rec = await this.api.getRun(state.id);
        if (rec.status && rec.status !== "running" && rec.status !== "pending") return;
      } catch (err) {
        this.log(`cannot read the run: ${err.message}`, "error");
        return;
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  }

  async finish(state) {
    let rec = null;
    try {
      rec = await this.api.getRun(state.id);
    } catch (err) {
      this.log(`cannot read the run record: ${err.message}`, "error");
    }
    if (rec) {
      state.status = rec.status || state.status;
      for (const n of rec.nodes || []) {
        const id = n.node_id || n.id;
        if (id && this.model.nodes.has(id)) this.nodeStatus(state, id, n.status, { duration: n.duration, error: n.error });
      }
      state.results = state.results || rec.results || rec.outputs || null;
      const err = rec.error;
      state.error = err && typeof err === "object" ? err.message : err;
      state.errorNode = (err && typeof err === "object" ? err.node_id : null) || rec.error_node;
    }
    for (const id of this.model.nodes.keys()) {
      const s = state.nodes[id]?.status;
      if (s === "pending" || s === "running") this.nodeStatus(state, id, state.status === "completed" ? "completed" : "notrun");
    }
    const ms = rec?.duration != null ? ` in ${(rec.duration * 1000).toFixed(0)} ms` : "";
    if (state.status === "completed") this.setStatus("completed", `Run ${state.id} completed${ms}`);
    else this.setStatus("failed", `Run ${state.id} failed${state.errorNode ? ` at '${state.errorNode}'` : ""}${ms}: ${state.error || ""}`);
    $("#run-results").textContent = state.results ? pretty(state.results) : "(the server kept no outputs for this run)";
    $("#run-open-detail").dataset.runId = state.id;
    $("#run-open-detail").hidden = false;
    if (this.inspector.selection?.kind === "node") this.inspector.render();
    this.active = null;
  }
}
