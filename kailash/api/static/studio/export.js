// Turning the saved form of a workflow into YAML, JSON or a Python program.
//
// The YAML is what Workflow.save(format="yaml") would write in substance: plain data
// only, strings quoted whenever YAML could read them as anything else, code as literal
// blocks. The Python builds the same workflow with the SDK and runs it with LocalRuntime.
// Pure functions: no page, no network.

const RESERVED = /^(y|yes|n|no|true|false|on|off|null|~|nan|inf)$/i;
const PLAIN = /^[A-Za-z_/][A-Za-z0-9_./ -]*$/;
const UNPRINTABLE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u2028\u2029\ufeff\ufffe\uffff]/;

function quoted(s) {
  return JSON.stringify(s).replace(/[\u007f-\u009f\u2028\u2029\ufeff\ufffe\uffff]/g,
    (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
}

function yamlKey(k) {
  return PLAIN.test(k) && !RESERVED.test(k) && !k.endsWith(" ") ? k : quoted(k);
}

// A finite number as text that YAML 1.1 (PyYAML) and Python both read back exactly:
// integers past 2**53 can only be floats here, so they keep a float's form; and a float
// in exponent form needs a dot and a signed exponent ("1e-7" would read as text).
export function numberText(v) {
  let text = Number.isInteger(v) && Math.abs(v) >= 2 ** 53 ? v.toExponential() : String(v);
  const m = /^(-?[0-9.]+)e([+-]?)([0-9]+)$/.exec(text);
  if (m) text = `${m[1].includes(".") ? m[1] : m[1] + ".0"}e${m[2] || "+"}${m[3]}`;
  return text;
}

function yamlScalar(v) {
  if (v === null || v === undefined) return "null";
  if (typeof v === "boolean") return v ? "true" : "false";
  if (typeof v === "number") {
    if (Number.isNaN(v)) return ".nan";
    if (!Number.isFinite(v)) return v > 0 ? ".inf" : "-.inf";
    return numberText(v);
  }
  const s = String(v);
  return PLAIN.test(s) && !RESERVED.test(s) && !s.endsWith(" ") ? s : quoted(s);
}

// A literal block (|, |- or |+) for multi-line text that YAML can hold that way.
function literalBlock(s, pad) {
  if (!s.includes("\n") || s.includes("\r") || UNPRINTABLE.test(s.replace(/\t/g, ""))) return null;
  const firstContent = s.split("\n").find((l) => l.trim() !== "");
  if (firstContent === undefined || /^[ \t]/.test(firstContent)) return null;
  if (s.split("\n").some((l) => l !== "" && l.trim() === "")) return null;
  let indicator = "|-";
  let lines = s.split("\n");
  if (s.endsWith("\n")) {
    indicator = s.endsWith("\n\n") ? "|+" : "|";
    lines = lines.slice(0, -1);
  }
  return [indicator, ...lines.map((l) => (l === "" ? "" : pad + l))];
}

function isScalar(v) { return v === null || typeof v !== "object"; }

function yamlLines(value, indent) {
  const pad = " ".repeat(indent);
  const out = [];
  if (Array.isArray(value)) {
    if (value.length && value.length <= 8 && value.every((v) => v === null || ["number", "boolean"].includes(typeof v))) {
      return [`${pad}[${value.map(yamlScalar).join(", ")}]`]; // short lists of numbers (positions) in flow style
    }
    for (const item of value) {
      if (isScalar(item)) {
        const block = typeof item === "string" ? literalBlock(item, pad + "  ") : null;
        if (block) out.push(`${pad}- ${block[0]}`, ...block.slice(1));
        else out.push(`${pad}- ${yamlScalar(item)}`);
      } else if (isEmpty(item)) {
        out.push(`${pad}- ${Array.isArray(item) ? "[]" : "{}"}`);
      } else {
        const inner = yamlLines(item, indent + 2);
        inner[0] = `${pad}- ${inner[0].slice(indent + 2)}`;
        out.push(...inner);
      }
    }
    return out;
  }
  for (const [k, v] of Object.entries(value)) {
    const key = `${pad}${yamlKey(k)}:`;
    if (isScalar(v)) {
      const block = typeof v === "string" ? literalBlock(v, pad + "  ") : null;
      if (block) out.push(`${key} ${block[0]}`, ...block.slice(1));
      else out.push(`${key} ${yamlScalar(v)}`);
    } else if (isEmpty(v)) {
      out.push(`${key} ${Array.isArray(v) ? "[]" : "{}"}`);
    } else {
      const inner = yamlLines(v, Array.isArray(v) ? indent : indent + 2);
      if (inner.length === 1 && inner[0].trimStart().startsWith("[")) out.push(`${key} ${inner[0].trimStart()}`);
      else out.push(key, ...inner);
    }
  }
  return out;
}

function isEmpty(v) { return Array.isArray(v) ? v.length === 0 : Object.keys(v).length === 0; }

export function toYaml(doc) { return yamlLines(doc, 0).join("\n") + "\n"; }

export function toJson(doc) { return JSON.stringify(doc, null, 2) + "\n"; }

// -- Python ---------------------------------------------------------------------------
const ENV_REF = /^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$/;
const PY_KEYWORDS = new Set(("False None True and as assert async await break class continue def del elif else except " +
  "finally for from global if import in is lambda nonlocal not or pass raise return try while with yield").split(" "));

function pyStr(s) {
  if (s.includes("\n") && !s.includes('"""') && !s.includes("\\") && !s.endsWith('"') && !UNPRINTABLE.test(s.replace(/\t/g, ""))) {
    return `"""${s}"""`;
  }
  return quoted(s);
}

function py(v, indent, uses) {
  if (v === null || v === undefined) return "None";
  if (typeof v === "boolean") return v ? "True" : "False";
  if (typeof v === "number") {
    if (Number.isNaN(v)) return 'float("nan")';
    if (!Number.isFinite(v)) return v > 0 ? 'float("inf")' : 'float("-inf")';
    return numberText(v);
  }
  if (typeof v === "string") {
    const m = ENV_REF.exec(v);
    if (m) { uses.secrets = true; return `secret_from_env(${quoted(m[1])}, ${quoted(v)})`; }
    return pyStr(v);
  }
  const pad = " ".repeat(indent + 4);
  const end = " ".repeat(indent);
  if (Array.isArray(v)) {
    if (!v.length) return "[]";
    return "[\n" + v.map((x) => pad + py(x, indent + 4, uses) + ",\n").join("") + end + "]";
  }
  const entries = Object.entries(v);
  if (!entries.length) return "{}";
  return "{\n" + entries.map(([k, x]) => `${pad}${quoted(k)}: ${py(x, indent + 4, uses)},\n`).join("") + end + "}";
}

function isIdentifier(k) { return /^[A-Za-z_][A-Za-z0-9_]*$/.test(k) && !PY_KEYWORDS.has(k); }

export function toPython(doc) {
  const uses = { secrets: false };
  const body = [];
  const args = [quoted(doc.name || "workflow")];
  if (doc.description) args.push(`description=${quoted(doc.description)}`);
  body.push(`workflow = Workflow(${args.join(", ")})`, "");
  for (const n of doc.nodes) {
    const entries = Object.entries(n.config || {});
    const simple = entries.filter(([k]) => isIdentifier(k));
    const odd = entries.filter(([k]) => !isIdentifier(k));
    if (!entries.length) {
      body.push(`workflow.add_node(${quoted(n.id)}, ${quoted(n.type)})`);
      continue;
    }
    const lines = [`workflow.add_node(`, `    ${quoted(n.id)},`, `    ${quoted(n.type)},`];
    for (const [k, v] of simple) lines.push(`    ${k}=${py(v, 4, uses)},`);
    if (odd.length) lines.push(`    **${py(Object.fromEntries(odd), 4, uses)},`);
    lines.push(")");
    body.push(...lines);
  }
  if (doc.connections.length) body.push("");
  for (const c of doc.connections) {
    let call = `workflow.connect(${quoted(c.from)}, ${quoted(c.to)}`;
    if (c.output_key) call += `, ${quoted(c.output_key)}`;
    if (c.mapping) call += `, mapping={${Object.entries(c.mapping).map(([k, v]) => `${quoted(k)}: ${quoted(String(v))}`).join(", ")}}`;
    body.push(call + ")");
  }
  const head = [
    `"""Workflow '${(doc.name || "workflow").replace(/"""/g, "")}', exported from Kailash Studio."""`,
    "",
    "from kailash.runtime import LocalRuntime",
    "from kailash.workflow import Workflow",
  ];
  if (uses.secrets) head.push("from kailash.security.secrets import secret_from_env");
  head.push("");
  const tail = [
    "",
    "",
    'if __name__ == "__main__":',
    "    results, run_id = LocalRuntime().execute(workflow)",
    '    print(f"run {run_id}")',
    "    for node_id, outputs in results.items():",
    '        print(f"{node_id}: {outputs}")',
  ];
  return [...head, ...body, ...tail].join("\n") + "\n";
}

export const EXPORTERS = {
  python: { label: "Python", ext: "py", mime: "text/x-python", render: toPython },
  yaml: { label: "YAML", ext: "yaml", mime: "application/yaml", render: toYaml },
  json: { label: "JSON", ext: "json", mime: "application/json", render: toJson },
};
