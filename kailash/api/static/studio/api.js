// Talking to the Kailash gateway: the API key, JSON requests, and a run's live events.
//
// This module owns every network call the Studio makes. It never touches the page.
// The key lives in localStorage and is sent as X-API-Key; the run event stream is read
// with fetch() (not EventSource) so that the key can travel in a header.

const KEY_STORAGE = "kailash.studio.apiKey";

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }

  // Every problem string the server gave, however it shaped them.
  // Every problem the server listed, as it sent them (text or {message, node_id, parameter}).
  get rawProblems() {
    const b = this.body;
    if (!b || typeof b !== "object") return [this.message];
    for (const holder of [b.error, b]) {
      if (holder && typeof holder === "object") {
        if (Array.isArray(holder.problems)) return holder.problems;
        if (Array.isArray(holder.detail)) return holder.detail;
      }
    }
    return [this.message];
  }

  // The same, as text.
  get problems() { return this.rawProblems.map(problemText); }

  // The node an error names, if any ({"error": {"node_id": ...}}).
  get nodeId() {
    const e = this.body && this.body.error;
    return (e && typeof e === "object" && e.node_id) || null;
  }
}

// A problem as the Studio works with it: {message, node_id, parameter, connection}. The
// server's problems carry their node, parameter and connection as fields; a bare string
// (from an older server or a client-side check) concerns the workflow as a whole.
export function asProblem(p) {
  if (p && typeof p === "object") {
    const conn = Array.isArray(p.connection) && p.connection.length === 2 ? p.connection.map(String) : null;
    return { message: problemText(p), node_id: p.node_id || null, parameter: p.parameter || null, connection: conn };
  }
  return { message: problemText(p), node_id: null, parameter: null, connection: null };
}

export function problemText(p) {
  if (typeof p === "string") return p;
  if (p && typeof p === "object") {
    if (p.message) return p.message;
    if (p.msg) return (Array.isArray(p.loc) ? p.loc.join(".") + ": " : "") + p.msg;
  }
  return JSON.stringify(p);
}

function errorMessage(status, body, fallback) {
  if (body && typeof body === "object" && body.error && typeof body.error === "object") {
    body = body.error; // the gateway's shape: {"error": {"code", "message", "problems"?, ...}}
  }
  if (body && typeof body === "object") {
    const parts = [];
    const main = body.error || body.message || (typeof body.detail === "string" ? body.detail : null);
    if (main) parts.push(typeof main === "string" ? main : main.message || JSON.stringify(main));
    const seen = parts.join("\n");
    if (Array.isArray(body.problems)) parts.push(...body.problems.map(problemText).filter((p) => !seen.includes(p)));
    else if (Array.isArray(body.detail)) parts.push(...body.detail.map(problemText));
    if (parts.length) return parts.join("\n");
  }
  if (typeof body === "string" && body.trim()) return body.trim();
  return `${fallback} (HTTP ${status})`;
}

export class Api {
  constructor(base = "") {
    this.base = base;
    this.onUnauthorized = null; // set by the app: shows the key prompt
  }

  get key() {
    try { return localStorage.getItem(KEY_STORAGE) || ""; } catch { return ""; }
  }

  set key(value) {
    try {
      if (value) localStorage.setItem(KEY_STORAGE, value);
      else localStorage.removeItem(KEY_STORAGE);
    } catch { /* private mode: the key lasts for this page only */ }
    this._memKey = value;
  }

  headers(extra = {}) {
    const h = { Accept: "application/json", ...extra };
    const key = this.key || this._memKey;
    if (key) h["X-API-Key"] = key;
    return h;
  }

  // quiet: a 401 is the caller's business (no key prompt).
  async request(method, path, { json, form, query, raw, quiet } = {}) {
    let url = this.base + path;
    if (query) url += "?" + new URLSearchParams(query).toString();
    const init = { method, headers: this.headers() };
    if (json !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(json);
    } else if (form) {
      init.body = form;
    }
    let res;
    try {
      res = await fetch(url, init);
    } catch (err) {
      throw new ApiError(0, `cannot reach the gateway at ${url}: ${err.message}`, null);
    }
    if (raw && res.ok) return res;
    const text = await res.text();
    let body = text;
    try { body = text ? JSON.parse(text) : null; } catch { /* not JSON: keep the text */ }
    if (!res.ok) {
      const err = new ApiError(res.status, errorMessage(res.status, body, `${method} ${path} failed`), body);
      if (res.status === 401 && this.onUnauthorized && !quiet) this.onUnauthorized(err);
      throw err;
    }
    return body;
  }

  get(path, opts) { return this.request("GET", path, opts); }
  post(path, json, opts = {}) { return this.request("POST", path, { ...opts, json }); }

  // -- the REST contract ---------------------------------------------------------------
  nodes() { return this.get("/nodes"); }
  health() { return this.get("/health"); }
  validate(workflow) { return this.post("/validate", { workflow }); }
  saveWorkflow(name, workflow) { return this.post("/workflows", { name, workflow }); }
  listWorkflows() { return this.get("/workflows"); }
  getWorkflow(name) { return this.get(`/workflows/${encodeURIComponent(name)}`); }
  getRun(runId) { return this.get(`/runs/${encodeURIComponent(runId)}`); }
  listRuns() { return this.get("/runs"); }

  execute(name, parameters) {
    return this.request("POST", `/workflows/${encodeURIComponent(name)}/execute`, {
      json: { parameters: parameters || {} },
      query: { async: "true" },
    });
  }

  exportWorkflow(name, format) {
    return this.request("GET", `/workflows/${encodeURIComponent(name)}/export`, { query: { format }, raw: true })
      .then((res) => res.text());
  }

  // Upload a saved workflow file as it is (the server reads YAML safely).
  importFile(file, name) {
    const form = new FormData();
    form.append("workflow", file, file.name);
    if (name) form.append("name", name);
    return this.request("POST", "/workflows", { form });
  }

  // Follow a run's events (SSE over fetch). Calls onEvent(event) per event and resolves
  // when the stream ends (the run is over) or `signal` aborts.
  async followRun(runId, onEvent, signal) {
    const res = await fetch(this.base + `/runs/${encodeURIComponent(runId)}/events`, {
      headers: this.headers({ Accept: "text/event-stream" }),
      signal,
    });
    if (!res.ok || !res.body) throw new ApiError(res.status, `run events unavailable (HTTP ${res.status})`, null);
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, "");
        const event = parseSseBlock(block);
        if (event && onEvent(event) === false) {
          reader.cancel().catch(() => {});
          return;
        }
      }
    }
  }
}

function parseSseBlock(block) {
  let type = null;
  const data = [];
  for (const line of block.split(/\r?\n/)) {
    if (line.startsWith(":")) continue;
    if (line.startsWith("event:")) type = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
  }
  if (!data.length) return null;
  let payload;
  try { payload = JSON.parse(data.join("\n")); } catch { return null; }
  if (payload && typeof payload === "object" && !payload.event && type) payload.event = type;
  return payload;
}
