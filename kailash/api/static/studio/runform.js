// The run dialog's parameter form, generated from each parameter's JSON Schema.
//
// This module owns the fields only: GET /nodes publishes each parameter's `schema`
// (type, enum, minimum/maximum, format) and the run dialog asks for the inputs a run
// must supply. An enum is a select, a number an <input type=number> with its limits, a
// boolean a yes/no select, a secret a password field, and anything structured (objects,
// arrays, unions) a small JSON box. readRunForm() turns the fields back into
// {node_id: {param: value}}, or names the node, parameter and what was expected.

function el(tag, props = {}, ...children) {
  const e = Object.assign(document.createElement(tag), props);
  for (const c of children) if (c != null) e.append(c);
  return e;
}

// The schema of a catalog parameter ({name, type, schema, choices, minimum, maximum, ...}).
export function schemaOf(param) {
  const s = { ...(param.schema || {}) };
  if (!s.enum && Array.isArray(param.choices) && param.choices.length) s.enum = param.choices;
  if (s.minimum === undefined && param.minimum != null) s.minimum = param.minimum;
  if (s.maximum === undefined && param.maximum != null) s.maximum = param.maximum;
  if (!s.format && param.format) s.format = param.format;
  return s;
}

function kindOf(schema, param) {
  if (Array.isArray(schema.enum) && schema.enum.length) return "enum";
  const t = Array.isArray(schema.type) ? schema.type.filter((x) => x !== "null") : [schema.type];
  if (t.length === 1) {
    if (t[0] === "integer" || t[0] === "number") return t[0];
    if (t[0] === "boolean") return "boolean";
    if (t[0] === "string") return param.secret || schema.format === "password" || schema.writeOnly ? "secret" : "string";
  }
  return "json";
}

function control(nodeId, param, value) {
  const schema = schemaOf(param);
  const kind = kindOf(schema, param);
  const id = `rf-${nodeId}-${param.name}`.replace(/[^A-Za-z0-9_-]/g, "_");
  let input;
  if (kind === "enum" || kind === "boolean") {
    const options = kind === "boolean" ? [true, false] : schema.enum;
    input = el("select", { id });
    input.append(el("option", { value: "", textContent: param.required ? "— choose —" : "(default)" }));
    for (const v of options) input.append(el("option", { value: JSON.stringify(v), textContent: String(v) }));
    if (value !== undefined && value !== null) input.value = JSON.stringify(value);
  } else if (kind === "integer" || kind === "number") {
    input = el("input", { id, type: "number", step: kind === "integer" ? "1" : "any" });
    if (schema.minimum != null) input.min = String(schema.minimum);
    if (schema.maximum != null) input.max = String(schema.maximum);
    if (schema.exclusiveMinimum != null) input.min = String(schema.exclusiveMinimum);
    if (value != null) input.value = String(value);
  } else if (kind === "json") {
    input = el("textarea", { id, className: "mono", rows: 2, spellcheck: false, placeholder: "JSON value" });
    if (value != null) input.value = JSON.stringify(value);
  } else {
    input = el("input", { id, type: kind === "secret" ? "password" : schema.format === "uri" ? "url" : "text", spellcheck: false });
    input.autocomplete = "off";
    if (schema.pattern) input.pattern = schema.pattern;
    if (value != null) input.value = String(value);
  }
  input.dataset.node = nodeId;
  input.dataset.param = param.name;
  input.dataset.kind = kind;
  input.required = !!param.required && kind !== "boolean";
  const limits = [];
  if (schema.minimum != null) limits.push(`≥ ${schema.minimum}`);
  if (schema.maximum != null) limits.push(`≤ ${schema.maximum}`);
  const hint = [param.description, limits.join(", ")].filter(Boolean).join(" · ");
  return el("div", { className: "rf-field" },
    el("label", { htmlFor: id, className: "rf-label" }, el("code", { textContent: param.name }),
      param.required ? el("span", { className: "rf-req", textContent: " *" }) : null,
      el("span", { className: "muted small", textContent: ` ${param.type || ""}` })),
    input,
    hint ? el("div", { className: "muted small", textContent: hint }) : null);
}

// Fill `container` with a fieldset per node of `inputs` ({node_id: [catalog params]});
// `values` ({node_id: {param: value}}) are shown in the fields.
export function buildRunForm(container, inputs, values = {}) {
  container.replaceChildren();
  for (const [nodeId, params] of Object.entries(inputs)) {
    const fs = el("fieldset", { className: "rf-node" }, el("legend", { textContent: nodeId }));
    fs.dataset.node = nodeId;
    for (const p of params) fs.append(control(nodeId, p, values?.[nodeId]?.[p.name]));
    container.append(fs);
  }
  container.hidden = !container.children.length;
}

// {params} from the fields (an empty field is left out), or {error, input} naming what is wrong.
export function readRunForm(container) {
  const params = {};
  for (const input of container.querySelectorAll("[data-param]")) {
    const { node, param, kind } = input.dataset;
    const where = `${node}.${param}`;
    const raw = input.value.trim();
    if (!raw) continue;
    let value;
    if (kind === "enum" || kind === "boolean") value = JSON.parse(input.value);
    else if (kind === "integer" || kind === "number") {
      if (!input.checkValidity()) {
        const lim = [input.min && `at least ${input.min}`, input.max && `at most ${input.max}`].filter(Boolean).join(" and ");
        return { error: `${where}: expected ${kind === "integer" ? "a whole number" : "a number"}${lim ? ` ${lim}` : ""}, got ${raw}`, input };
      }
      value = Number(raw);
    } else if (kind === "json") {
      try { value = JSON.parse(raw); } catch (err) { return { error: `${where}: expected a JSON value (${err.message})`, input }; }
    } else {
      if (!input.checkValidity()) return { error: `${where}: ${input.validationMessage}`, input };
      value = input.value;
    }
    (params[node] ||= {})[param] = value;
  }
  return { params };
}
