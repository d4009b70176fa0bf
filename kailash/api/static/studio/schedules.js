// The Schedules panel: list the namespace's schedules, add one, pause/resume and delete.
//
// This module owns the schedules dialog only; every call goes through api.js
// (GET/POST /schedules, PATCH/DELETE /schedules/{id}). Text from the server is set
// with textContent, never as HTML.

const $ = (sel) => document.querySelector(sel);

function cell(text, className = "") {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function when(s) {
  return s.cron ? `cron ${s.cron}${s.timezone && s.timezone !== "UTC" ? " " + s.timezone : ""}` : `every ${s.every}s`;
}

function nextFire(s) {
  return s.next_fire_at ? new Date(s.next_fire_at * 1000).toLocaleString() : "paused";
}

export class SchedulesPanel {
  // workflowName(): the name of the workflow open in the Studio (the form's default).
  constructor(api, toast, workflowName) {
    this.api = api;
    this.toast = toast;
    this.workflowName = workflowName;
    $("#btn-schedules").addEventListener("click", () => this.open());
    $("#schedules-close").addEventListener("click", () => $("#schedules-dialog").close());
    $("#schedule-form").addEventListener("submit", (ev) => { ev.preventDefault(); this.add(); });
  }

  open() {
    $("#schedule-workflow").value = this.workflowName() || "";
    $("#schedule-error").textContent = "";
    $("#schedules-dialog").showModal();
    return this.refresh();
  }

  async refresh() {
    const body = $("#schedules-list");
    body.replaceChildren();
    let items = [];
    try {
      items = (await this.api.get("/schedules")).schedules || [];
    } catch (err) {
      body.append(Object.assign(document.createElement("tr"), { className: "error-text", textContent: err.message }));
      return;
    }
    if (!items.length) {
      const tr = document.createElement("tr");
      tr.append(cell("No schedules yet.", "muted"));
      body.append(tr);
    }
    for (const s of items) {
      const tr = document.createElement("tr");
      tr.dataset.schedule = s.id;
      tr.dataset.enabled = String(s.enabled);
      tr.append(cell(s.workflow), cell(when(s), "mono"), cell(s.catchup), cell(nextFire(s)));
      const actions = document.createElement("td");
      const toggle = Object.assign(document.createElement("button"), {
        className: "small", textContent: s.enabled ? "Pause" : "Resume" });
      toggle.dataset.action = "toggle";
      toggle.addEventListener("click", () => this.change(s, { enabled: !s.enabled }));
      const del = Object.assign(document.createElement("button"), { className: "small", textContent: "Delete" });
      del.dataset.action = "delete";
      del.addEventListener("click", () => this.remove(s));
      actions.append(toggle, del);
      tr.append(actions);
      body.append(tr);
    }
  }

  async add() {
    const error = $("#schedule-error");
    error.textContent = "";
    const timing = $("#schedule-when").value.trim();
    const body = { workflow: $("#schedule-workflow").value.trim(), catchup: $("#schedule-catchup").value };
    // several space-separated fields read as cron; one word ("30s", "5m", 60) as an interval
    if (/\s/.test(timing)) body.cron = timing; else body.every = /^\d+$/.test(timing) ? Number(timing) : timing;
    const params = $("#schedule-params").value.trim();
    if (params) {
      try { body.parameters = JSON.parse(params); } catch (err) {
        error.textContent = `parameters: not JSON (${err.message})`;
        return;
      }
    }
    try {
      await this.api.post("/schedules", body);
    } catch (err) {
      const field = err.body && err.body.error && err.body.error.parameter;
      error.textContent = field ? `${field}: ${err.message}` : err.message;
      return;
    }
    this.toast(`Scheduled '${body.workflow}'`, "ok");
    $("#schedule-when").value = "";
    await this.refresh();
  }

  async change(s, fields) {
    try {
      await this.api.request("PATCH", `/schedules/${encodeURIComponent(s.id)}`, { json: fields });
    } catch (err) {
      this.toast(`Could not change the schedule: ${err.message}`, "error");
    }
    await this.refresh();
  }

  async remove(s) {
    if (!confirm(`Delete the schedule of '${s.workflow}' (${when(s)})?`)) return;
    try {
      await this.api.request("DELETE", `/schedules/${encodeURIComponent(s.id)}`);
    } catch (err) {
      this.toast(`Could not delete the schedule: ${err.message}`, "error");
    }
    await this.refresh();
  }
}
