// The workflow being edited: nodes, connections and where they sit on the canvas.
//
// This module owns the in-page graph and its conversion to and from the SDK's saved
// form (Workflow.to_dict(): schema_version 1, nodes [{id, type, config}], connections
// [{from, to, output_key?, mapping?}]). Canvas positions travel in metadata.studio so a
// workflow saved from the Studio opens the same way again; the SDK ignores them.
// It never draws and never talks to the server.

export const SCHEMA_VERSION = 1;

export class Model {
  constructor() {
    this.catalog = new Map(); // type name -> node description from GET /nodes
    this.listeners = new Set();
    this.reset();
  }

  reset(name = "untitled") {
    this.name = name;
    this.description = "";
    this.version = "1.0.0";
    this.metadata = {};
    this.policies = null;
    this.nodes = new Map(); // id -> {id, type, config, x, y}
    this.edges = []; // {from, to, port, mapping}
    this.changed("reset");
  }

  onChange(fn) { this.listeners.add(fn); }

  changed(what, detail) {
    for (const fn of this.listeners) fn(what, detail);
  }

  describe(type) { return this.catalog.get(type) || null; }

  // -- nodes -----------------------------------------------------------------------------
  newId(type) {
    const base = type.replace(/Node$/, "").replace(/([a-z0-9])([A-Z])/g, "$1_$2").replace(/([A-Z]+)([A-Z][a-z])/g, "$1_$2")
      .toLowerCase() || "node";
    let i = 1;
    while (this.nodes.has(`${base}_${i}`)) i++;
    return `${base}_${i}`;
  }

  addNode(type, x, y, { id, config } = {}) {
    const nodeId = id || this.newId(type);
    const node = { id: nodeId, type, config: { ...(config || {}) }, x: Math.round(x), y: Math.round(y) };
    this.nodes.set(nodeId, node);
    this.changed("graph", { added: nodeId });
    return node;
  }

  removeNode(id) {
    if (!this.nodes.delete(id)) return;
    this.edges = this.edges.filter((e) => e.from !== id && e.to !== id);
    this.changed("graph", { removed: id });
  }

  renameNode(oldId, newId) {
    newId = newId.trim();
    if (!newId || newId === oldId) return "";
    if (this.nodes.has(newId)) return `a node named '${newId}' already exists`;
    if (!/^[A-Za-z_][A-Za-z0-9_.-]*$/.test(newId) || newId === "__proto__") {
      return "use letters, digits, '_', '-' or '.' (not starting with a digit)";
    }
    const node = this.nodes.get(oldId);
    const rebuilt = new Map();
    for (const [k, v] of this.nodes) rebuilt.set(k === oldId ? newId : k, v);
    node.id = newId;
    this.nodes = rebuilt;
    for (const e of this.edges) {
      if (e.from === oldId) e.from = newId;
      if (e.to === oldId) e.to = newId;
    }
    this.changed("graph", { renamed: [oldId, newId] });
    return "";
  }

  moveNode(id, x, y) {
    const node = this.nodes.get(id);
    if (!node) return;
    node.x = Math.max(0, Math.round(x));
    node.y = Math.max(0, Math.round(y));
    this.changed("move", { id });
  }

  setParam(id, name, value) {
    const node = this.nodes.get(id);
    if (!node) return;
    if (value === undefined) delete node.config[name];
    else node.config[name] = value;
    this.changed("config", { id, name });
  }

  // -- connections -----------------------------------------------------------------------
  connect(from, to, { port = null, mapping = null } = {}) {
    if (from === to) return "a node cannot feed itself";
    if (!this.nodes.has(from) || !this.nodes.has(to)) return "both ends must be nodes on the canvas";
    if (this.edges.some((e) => e.from === from && e.to === to && !e.port && !e.mapping && !port && !mapping)) {
      return `'${from}' is already connected to '${to}'`;
    }
    const edge = { from, to, port, mapping };
    this.edges.push(edge);
    this.changed("graph", { connected: edge });
    return "";
  }

  updateEdge(edge, { port = null, mapping = null }) {
    edge.port = port || null;
    edge.mapping = mapping && Object.keys(mapping).length ? mapping : null;
    this.changed("graph", { edge });
  }

  removeEdge(edge) {
    this.edges = this.edges.filter((e) => e !== edge);
    this.changed("graph", { removedEdge: edge });
  }

  incoming(id) { return this.edges.filter((e) => e.to === id); }

  // Required parameters nothing on the canvas supplies: they must come at run time.
  runtimeInputs() {
    const out = new Map();
    for (const node of this.nodes.values()) {
      const desc = this.describe(node.type);
      if (!desc) continue;
      const inc = this.incoming(node.id);
      const mapped = new Set();
      for (const e of inc) {
        if (e.mapping) Object.values(e.mapping).forEach((v) => mapped.add(v));
        else if (desc.primary_input) mapped.add(desc.primary_input);
      }
      for (const p of desc.parameters || []) {
        if (!p.required || p.default !== null || node.config[p.name] !== undefined) continue;
        if (mapped.has(p.name)) continue;
        if (inc.some((e) => !e.mapping)) continue; // upstream outputs may be offered by this name
        if (!out.has(node.id)) out.set(node.id, []);
        out.get(node.id).push(p);
      }
    }
    return Object.fromEntries(out);
  }

  // -- the SDK's saved form ------------------------------------------------------------
  toDict() {
    const nodes = [];
    for (const n of this.nodes.values()) nodes.push({ id: n.id, type: n.type, config: structuredClone(n.config) });
    // fromEntries defines own keys, so no node id can reach Object.prototype
    const positions = Object.fromEntries([...this.nodes.values()].map((n) => [n.id, [n.x, n.y]]));
    const connections = this.edges.map((e) => {
      const c = { from: e.from, to: e.to };
      if (e.port) c.output_key = e.port;
      if (e.mapping) c.mapping = { ...e.mapping };
      return c;
    });
    const out = {
      schema_version: SCHEMA_VERSION,
      name: this.name,
      description: this.description,
      version: this.version,
      nodes,
      connections,
      metadata: { ...structuredClone(this.metadata), studio: { positions } },
    };
    if (this.policies) out.policies = structuredClone(this.policies);
    return out;
  }

  load(data) {
    if (!data || typeof data !== "object") throw new Error("a workflow document must be a mapping");
    let nodes = data.nodes || [];
    if (!Array.isArray(nodes)) nodes = Object.entries(nodes).map(([id, v]) => ({ id, ...v }));
    const meta = data.metadata && typeof data.metadata === "object" ? structuredClone(data.metadata) : {};
    const saved = (meta.studio && meta.studio.positions) || {};
    const positions = new Map(Object.entries(saved).filter(([, p]) => Array.isArray(p) && p.length === 2));
    delete meta.studio;
    this.name = String(data.name || "workflow");
    this.description = String(data.description || "");
    this.version = String(data.version || "1.0.0");
    this.metadata = meta;
    this.policies = data.policies || null;
    this.nodes = new Map();
    this.edges = [];
    for (const spec of nodes) {
      if (!spec || spec.id == null || !spec.type) throw new Error("every node needs an 'id' and a 'type'");
      const pos = positions.get(String(spec.id)) || [0, 0];
      this.nodes.set(String(spec.id), { id: String(spec.id), type: String(spec.type), config: { ...(spec.config || {}) }, x: pos[0], y: pos[1] });
    }
    for (const c of data.connections || []) {
      this.edges.push({ from: String(c.from), to: String(c.to), port: c.output_key ?? c.port ?? null, mapping: c.mapping || null });
    }
    if (!nodes.every((n) => positions.has(String(n.id)))) this.layout();
    this.changed("reset");
  }

  // Layered layout (by longest path from an entry node) for workflows without positions.
  layout() {
    const depth = new Map([...this.nodes.keys()].map((k) => [k, 0]));
    for (let pass = 0; pass < this.nodes.size; pass++) {
      let moved = false;
      for (const e of this.edges) {
        if (depth.has(e.from) && depth.has(e.to) && depth.get(e.to) < depth.get(e.from) + 1) {
          depth.set(e.to, depth.get(e.from) + 1);
          moved = true;
        }
      }
      if (!moved) break;
    }
    const rows = new Map();
    for (const [id, d] of depth) {
      const row = rows.get(d) || 0;
      rows.set(d, row + 1);
      const n = this.nodes.get(id);
      n.x = 40 + d * 260;
      n.y = 40 + row * 150;
    }
  }
}
