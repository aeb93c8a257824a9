// Summarises a V8 .heapsnapshot by what the objects are: self size and count
// per constructor name (objects, closures), per kind otherwise (strings,
// arrays, code, ...). Two summaries diffed give what a workload added, e.g.
// what caching N keys costs per key and in which shapes.
import { readFileSync } from "node:fs";

export interface HeapGroup {
  /** "Object", "Date", "(string)", "(array) (object elements)", ... */
  name: string;
  count: number;
  selfBytes: number;
}

interface SnapshotFile {
  snapshot: { meta: { node_fields: string[]; node_types: (string[] | string)[] } };
  nodes: number[];
  strings: string[];
}

/** Groups whose names say little on their own, keyed by kind plus name. */
const BY_KIND = new Set(["array", "hidden", "code", "synthetic", "object shape", "native"]);
const STRING_KINDS = new Set(["string", "concatenated string", "sliced string"]);

export function summarizeHeapSnapshot(file: string): Map<string, HeapGroup> {
  const data = JSON.parse(readFileSync(file, "utf8")) as SnapshotFile;
  const fields = data.snapshot.meta.node_fields;
  const types = data.snapshot.meta.node_types[0] as string[];
  const width = fields.length;
  const typeAt = fields.indexOf("type");
  const nameAt = fields.indexOf("name");
  const sizeAt = fields.indexOf("self_size");
  const groups = new Map<string, HeapGroup>();
  const { nodes, strings } = data;
  for (let i = 0; i < nodes.length; i += width) {
    const kind = types[nodes[i + typeAt]!]!;
    const rawName = strings[nodes[i + nameAt]!]!;
    let name: string;
    if (STRING_KINDS.has(kind)) name = "(string)";
    else if (kind === "number") name = "(heap number)";
    else if (kind === "bigint") name = "(bigint)";
    else if (kind === "closure") name = "(closure)";
    else if (kind === "regexp") name = "(regexp)";
    else if (BY_KIND.has(kind)) name = `(${kind}) ${rawName.length > 60 ? rawName.slice(0, 60) + "…" : rawName}`;
    else name = rawName.length > 60 ? rawName.slice(0, 60) + "…" : rawName;
    let group = groups.get(name);
    if (!group) groups.set(name, (group = { name, count: 0, selfBytes: 0 }));
    group.count++;
    group.selfBytes += nodes[i + sizeAt]!;
  }
  return groups;
}

/** Groups that grew from `before` to `after`, largest growth first. */
export function diffHeapSummaries(before: Map<string, HeapGroup>, after: Map<string, HeapGroup>): HeapGroup[] {
  const out: HeapGroup[] = [];
  for (const [name, a] of after) {
    const b = before.get(name);
    out.push({ name, count: a.count - (b?.count ?? 0), selfBytes: a.selfBytes - (b?.selfBytes ?? 0) });
  }
  for (const [name, b] of before) if (!after.has(name)) out.push({ name, count: -b.count, selfBytes: -b.selfBytes });
  return out.sort((x, y) => y.selfBytes - x.selfBytes);
}
