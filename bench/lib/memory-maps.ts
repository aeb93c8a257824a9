// Where a process's resident memory lives, from /proc/<pid>/smaps (Linux):
// file-backed pages (the node binary, shared libraries), the brk heap and
// glibc's malloc arenas (native allocations: Buffers' backing stores, the
// HTTP/2 and TLS libraries, V8's malloced memory) and other anonymous
// mappings (mostly V8's heap pages). Separates what V8 reports from what the
// C allocator keeps after JS has freed it.
import { readFileSync } from "node:fs";

export interface ResidentByKind {
  file: number;
  /** The brk heap: the main malloc arena. */
  brk: number;
  /** Anonymous mappings inside 64 MiB-aligned regions: glibc's per-thread malloc arenas. */
  mallocArenas: number;
  /** Other anonymous memory: V8's heap pages, thread stacks, ... */
  otherAnon: number;
}

// glibc's per-thread arenas are HEAP_MAX_SIZE (64 MiB on 64-bit) regions aligned to their size.
const ARENA = 64 * 2 ** 20;

export function residentByKind(pid: number): ResidentByKind {
  const out: ResidentByKind = { file: 0, brk: 0, mallocArenas: 0, otherAnon: 0 };
  const rows: { start: number; end: number; perms: string; name: string; rss: number }[] = [];
  for (const line of readFileSync(`/proc/${pid}/smaps`, "utf8").split("\n")) {
    const head = /^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head) {
      rows.push({ start: parseInt(head[1]!, 16), end: parseInt(head[2]!, 16), perms: head[3]!, name: head[4]!.trim(), rss: 0 });
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (rss && rows.length > 0) rows.at(-1)!.rss = Number(rss[1]) * 1024;
  }
  rows.forEach((row, i) => {
    if (row.name.startsWith("/")) out.file += row.rss;
    else if (row.name === "[heap]") out.brk += row.rss;
    else if (row.name === "" && isArena(row, rows[i + 1])) out.mallocArenas += row.rss;
    else out.otherAnon += row.rss;
  });
  return out;
}

/** An arena: its used part at a 64 MiB-aligned base, the rest of the 64 MiB reserved (---p) right after. */
function isArena(row: { start: number; end: number }, next: { start: number; end: number; perms: string } | undefined): boolean {
  if (row.start % ARENA !== 0) return false;
  if (row.end - row.start === ARENA) return true;
  return next !== undefined && next.start === row.end && next.perms === "---p" && next.end === row.start + ARENA;
}
