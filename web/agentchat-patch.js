// agentchat-patch.js: RFC 6902 JSON Patch, applied to a run's shared state (docs/protocol.md, "Runs":
// `run_state` deltas): its six operations (add, remove, replace, move, copy, test) on RFC 6901 pointers.
// An operation that does not apply throws; the input is never changed.

function pointer(path) {
  if (path === "") return [];
  if (!path.startsWith("/")) throw new Error(`bad JSON pointer ${path}`);
  return path.slice(1).split("/").map((part) => part.replace(/~1/g, "/").replace(/~0/g, "~"));
}

function parentOf(doc, parts) {
  let node = doc;
  for (const key of parts.slice(0, -1)) {
    if (node === null || typeof node !== "object" || !(key in node)) throw new Error(`no ${key} in the state`);
    node = node[key];
  }
  if (node === null || typeof node !== "object") throw new Error("the path's parent is not a container");
  return node;
}

function index(array, key, adding) {
  if (adding && key === "-") return array.length;
  const n = Number(key);
  if (!/^(0|[1-9][0-9]*)$/.test(key) || n > array.length - (adding ? 0 : 1)) throw new Error(`bad index ${key}`);
  return n;
}

function read(doc, parts) {
  if (!parts.length) return doc;
  const parent = parentOf(doc, parts);
  const key = parts.at(-1);
  if (Array.isArray(parent)) return parent[index(parent, key, false)];
  if (!(key in parent)) throw new Error(`no ${key} in the state`);
  return parent[key];
}

function put(doc, parts, value, replace) {
  if (!parts.length) return value;
  const parent = parentOf(doc, parts);
  const key = parts.at(-1);
  if (Array.isArray(parent)) {
    const i = index(parent, key, !replace);
    if (replace) parent[i] = value;
    else parent.splice(i, 0, value);
  } else {
    if (replace && !(key in parent)) throw new Error(`no ${key} to replace`);
    parent[key] = value;
  }
  return doc;
}

function remove(doc, parts) {
  const parent = parentOf(doc, parts);
  const key = parts.at(-1);
  if (Array.isArray(parent)) parent.splice(index(parent, key, false), 1);
  else if (key in parent) delete parent[key];
  else throw new Error(`no ${key} to remove`);
  return doc;
}

/** `doc` after the RFC 6902 operations `ops` (add, remove, replace, move, copy, test); a new value, the
 * input is not changed. Throws an Error when an operation does not apply (a failed `test` too). */
export function applyPatch(doc, ops) {
  let out = structuredClone(doc);
  for (const op of ops) {
    const parts = pointer(op.path);
    switch (op.op) {
      case "add":
        out = put(out, parts, structuredClone(op.value), false);
        break;
      case "replace":
        out = put(out, parts, structuredClone(op.value), true);
        break;
      case "remove":
        out = remove(out, parts);
        break;
      case "move": {
        const value = read(out, pointer(op.from));
        out = put(remove(out, pointer(op.from)), parts, value, false);
        break;
      }
      case "copy":
        out = put(out, parts, structuredClone(read(out, pointer(op.from))), false);
        break;
      case "test":
        if (JSON.stringify(read(out, parts)) !== JSON.stringify(op.value)) throw new Error(`test failed at ${op.path}`);
        break;
      default:
        throw new Error(`unknown operation ${op.op}`);
    }
  }
  return out;
}
