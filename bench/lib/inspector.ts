// Talks to a child process started with --inspect=127.0.0.1:0 (Chrome DevTools
// Protocol over the inspector WebSocket): a full garbage collection, the
// child's own memory figures (process.memoryUsage, V8 heap and heap-space
// statistics) and heap snapshots, so memory is reported both as the OS sees it
// and as live data. The inspector is idle between these calls.
import { createWriteStream } from "node:fs";

export interface HeapUsage {
  usedBytes: number;
  totalBytes: number;
}

/**
 * The inspector's WebSocket URL from the child's stderr ("Debugger listening on
 * ws://..."): the last one, since keyward re-executes itself with its V8 flags
 * (src/v8-flags.ts) and the new process listens anew.
 */
export function inspectorUrl(output: string): string | undefined {
  return [...output.matchAll(/Debugger listening on (ws:\/\/\S+)/g)].at(-1)?.[1];
}

interface Session {
  call(method: string, params?: Record<string, unknown>): Promise<Record<string, unknown>>;
  on(method: string, listener: (params: Record<string, unknown>) => void): void;
  close(): void;
}

async function openSession(url: string): Promise<Session> {
  const ws = new WebSocket(url);
  await new Promise<void>((resolve, reject) => {
    ws.addEventListener("open", () => resolve(), { once: true });
    ws.addEventListener("error", () => reject(new Error(`cannot reach the inspector at ${url}`)), { once: true });
  });
  let next = 0;
  const pending = new Map<number, { method: string; resolve: (r: Record<string, unknown>) => void; reject: (e: Error) => void }>();
  const listeners = new Map<string, (params: Record<string, unknown>) => void>();
  ws.addEventListener("message", (event: MessageEvent) => {
    const message = JSON.parse(String(event.data)) as {
      id?: number;
      method?: string;
      params?: Record<string, unknown>;
      result?: Record<string, unknown>;
      error?: { message: string };
    };
    if (message.id === undefined) {
      if (message.method) listeners.get(message.method)?.(message.params ?? {});
      return;
    }
    const call = pending.get(message.id);
    if (!call) return;
    pending.delete(message.id);
    if (message.error) call.reject(new Error(`${call.method}: ${message.error.message}`));
    else call.resolve(message.result ?? {});
  });
  return {
    call: (method, params) =>
      new Promise((resolve, reject) => {
        const id = ++next;
        pending.set(id, { method, resolve, reject });
        ws.send(JSON.stringify({ id, method, params }));
      }),
    on: (method, listener) => listeners.set(method, listener),
    close: () => ws.close(),
  };
}

async function withSession<T>(url: string, run: (session: Session) => Promise<T>): Promise<T> {
  const session = await openSession(url);
  try {
    return await run(session);
  } finally {
    session.close();
  }
}

/** Two full GCs (the second collects what the first's finalizers released), then the heap in use. */
export function collectGarbage(url: string): Promise<HeapUsage> {
  return withSession(url, async (s) => {
    await s.call("HeapProfiler.collectGarbage");
    await s.call("HeapProfiler.collectGarbage");
    const usage = await s.call("Runtime.getHeapUsage");
    return { usedBytes: Number(usage.usedSize), totalBytes: Number(usage.totalSize) };
  });
}

export interface HeapSpace {
  name: string;
  /** Bytes V8 has reserved for the space (what it may hold resident). */
  size: number;
  used: number;
  available: number;
  physical: number;
}

/** What the child says about its own memory, read without triggering a GC. */
export interface ProcessMemoryReport {
  /** process.memoryUsage(), bytes. */
  rss: number;
  heapTotal: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
  /** v8.getHeapStatistics(). */
  totalPhysicalSize: number;
  mallocedMemory: number;
  peakMallocedMemory: number;
  spaces: HeapSpace[];
}

// Evaluated in the child's main context: `process` is a global there, `require` is not.
const MEMORY_EXPRESSION = `(() => {
  const v8 = process.getBuiltinModule("v8");
  const m = process.memoryUsage();
  const h = v8.getHeapStatistics();
  return JSON.stringify({
    rss: m.rss, heapTotal: m.heapTotal, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers,
    totalPhysicalSize: h.total_physical_size, mallocedMemory: h.malloced_memory, peakMallocedMemory: h.peak_malloced_memory,
    spaces: v8.getHeapSpaceStatistics().map((s) => ({
      name: s.space_name, size: s.space_size, used: s.space_used_size, available: s.space_available_size, physical: s.physical_space_size,
    })),
  });
})()`;

export function readProcessMemory(url: string): Promise<ProcessMemoryReport> {
  return withSession(url, async (s) => {
    const { result } = (await s.call("Runtime.evaluate", { expression: MEMORY_EXPRESSION, returnByValue: true })) as {
      result: { value: string };
    };
    return JSON.parse(result.value) as ProcessMemoryReport;
  });
}

/** Writes a .heapsnapshot of the child (it GCs first) to `file`. */
export function writeHeapSnapshot(url: string, file: string): Promise<void> {
  return withSession(url, async (s) => {
    const out = createWriteStream(file);
    s.on("HeapProfiler.addHeapSnapshotChunk", (params) => out.write(String(params.chunk)));
    await s.call("HeapProfiler.takeHeapSnapshot", { reportProgress: false });
    await new Promise<void>((resolve, reject) => out.end((error?: Error | null) => (error ? reject(error) : resolve())));
  });
}

/** Evaluates an expression in the child's main context and returns its (JSON-able) value. */
export function evaluate<T>(url: string, expression: string): Promise<T> {
  return withSession(url, async (s) => {
    const { result, exceptionDetails } = (await s.call("Runtime.evaluate", { expression, returnByValue: true })) as {
      result: { value: T };
      exceptionDetails?: { text: string };
    };
    if (exceptionDetails) throw new Error(`evaluate: ${exceptionDetails.text}`);
    return result.value;
  });
}

export interface GcTotals {
  /** Young-generation collections and their main-thread time, µs (v8.GCProfiler). */
  scavenges: number;
  scavengeUs: number;
  /** Full (mark-compact) collections; their time includes the incremental marking steps before them. */
  markCompacts: number;
  markCompactUs: number;
}

/** Starts counting the child's garbage collections (v8.GCProfiler); read and stop with stopGcProfile. */
export function startGcProfile(url: string): Promise<void> {
  return evaluate(url, `(() => { globalThis.__benchGc = new (process.getBuiltinModule("v8").GCProfiler)(); globalThis.__benchGc.start(); })()`);
}

export function stopGcProfile(url: string): Promise<GcTotals> {
  return evaluate<GcTotals>(
    url,
    `(() => {
      const { statistics } = globalThis.__benchGc.stop();
      const t = { scavenges: 0, scavengeUs: 0, markCompacts: 0, markCompactUs: 0 };
      for (const g of statistics) {
        if (g.gcType === "Scavenge" || g.gcType === "MinorMarkSweep") { t.scavenges++; t.scavengeUs += g.cost; }
        else { if (g.gcType === "MarkSweepCompact") t.markCompacts++; t.markCompactUs += g.cost; }
      }
      return t;
    })()`,
  );
}

export interface CpuProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}
export interface CpuProfile {
  nodes: CpuProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** Starts V8's sampling profiler in the child; the returned stop() ends it and gives the profile. */
export async function startCpuProfile(url: string, intervalUs = 200): Promise<{ stop(): Promise<CpuProfile> }> {
  const session = await openSession(url);
  await session.call("Profiler.enable", {});
  await session.call("Profiler.setSamplingInterval", { interval: intervalUs });
  await session.call("Profiler.start", {});
  return {
    async stop() {
      try {
        const { profile } = (await session.call("Profiler.stop", {})) as { profile: CpuProfile };
        return profile;
      } finally {
        session.close();
      }
    },
  };
}

/** Self time by function (name and file:line), in µs, largest first. */
export function selfTimes(profile: CpuProfile): Map<string, number> {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const times = new Map<string, number>();
  profile.samples.forEach((id, i) => {
    const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
    const key = `${functionName || "(anonymous)"} ${url ? `${url.split("/").slice(-2).join("/")}:${lineNumber + 1}` : ""}`.trim();
    times.set(key, (times.get(key) ?? 0) + (profile.timeDeltas[i] ?? 0));
  });
  return new Map([...times].sort((a, b) => b[1] - a[1]));
}
