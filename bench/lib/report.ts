// The bench's results: one JSON document and its markdown rendering.
import type { Percentiles } from "./stats.js";

export interface ThroughputRow {
  id: string;
  /** The issue's scenario number (1-8), for cross-reference. */
  item: string;
  title: string;
  client: "h2load" | "node-http2";
  /** Connections × streams in flight. */
  concurrency: string;
  runs: number;
  /** Median over runs, and the range. */
  rps: number;
  rpsMin: number;
  rpsMax: number;
  /** Latency of the run with the median throughput, microseconds. */
  latencyUs: Pick<Percentiles, "p50" | "p90" | "p99">;
  /** rps ÷ ceiling rps, rps ÷ health rps (medians of the same run). */
  vsCeiling: number;
  vsHealth: number;
  answer: string;
  /** Server CPU seconds per second during the run (median): ~1.0 means one core saturated, i.e. server-bound. */
  serverCpu?: number;
  /** Server CPU time per call, µs (median over the rounds). */
  cpuUsPerCall?: number;
  /** Database reads of api_keys per 1,000 calls in this row's measured window, when counted. */
  lookupsPer1000?: number;
  problems: string[];
  note?: string;
}

export interface LatencyRow {
  id: string;
  title: string;
  client: "h2load" | "node-http2";
  concurrency: string;
  requests: number;
  rps: number;
  latencyUs: Percentiles;
  /** Database reads of api_keys per request, when counted. */
  lookupsPerRequest?: number;
  answer: string;
  problems: string[];
  note?: string;
}

export interface QueryRow {
  window: string;
  calls: number;
  statements: number;
  keyLookups: number;
  otherReads: number;
  writes: number;
  other: number;
  per1000: { statements: number; keyLookups: number; writes: number };
}

export interface Target {
  target: string;
  measured: string;
  met: boolean | null;
}

export interface BenchReport {
  startedAt: string;
  durationSeconds: number;
  machine: {
    cpus: number;
    node: string;
    h2load: string;
    pinned: boolean;
    placement: string;
    loadAverageBefore: number[];
    loadAverageAfter: number[];
    note: string;
    /** What was measured: the commit, and uncommitted changes under src/ if any. */
    source: string;
  };
  settings: Record<string, number | string>;
  throughput: ThroughputRow[];
  latency: LatencyRow[];
  memory: {
    rssBeforeMiB: number;
    rssAfterMiB: number;
    /** RSS idleSeconds after rssAfterMiB, before any throughput row: at rest (idle GC), no forced GC. */
    rssIdleMiB: number;
    idleSeconds: number;
    /** keyward_idle_gcs_total at the at-rest reading (NaN: not read). */
    idleGcs?: number;
    rssAfterGcMiB: number;
    /** Resident pages mapped from files (the node binary, shared libraries): before, as it stands, after GC. */
    fileBackedMiB?: { before: number; after: number; afterGc: number };
    /** Resident C heap (glibc's brk heap and thread arenas). */
    mallocMiB?: { before: number; after: number; afterGc: number };
    hwmMiB: number;
    /**
     * Live JS heap after a full GC: a fresh keyward's (the second process, before its first
     * call) and the main one's at the end of the run (every throughput row done), holding
     * the cached keys and the negative entries.
     */
    heapBeforeMiB: number;
    heapAfterMiB: number;
    cachedKeys: number;
    /** Unknown keys remembered (negative cache) when the after-GC readings are taken. */
    negativeKeys?: number;
    fillRps: number;
    /** The usage write-behind of the fill: statements and how long they took. */
    usageFlush: { writes: number; seconds: number };
  };
  queries: QueryRow[];
  workers: ThroughputRow[];
  targets: Target[];
  problems: string[];
}

const us = (v: number) => (v >= 1000 ? `${(v / 1000).toFixed(2)} ms` : `${Math.round(v)} µs`);
const int = (v: number) => Math.round(v).toLocaleString("en-US");
const ratio = (v: number) => (Number.isFinite(v) ? `${v.toFixed(2)}×` : "–");
const ok = (problems: string[]) => (problems.length === 0 ? "✓" : `✗ ${problems.join("; ")}`);

function throughputTable(rows: ThroughputRow[]): string[] {
  const out = [
    "| # | scenario | client | conc. | req/s (median) | range | server CPU | CPU µs/call | p50 | p90 | p99 | × ceiling | × health | lookups/1k | answer | checks |",
    "| --- | --- | --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
  ];
  for (const r of rows) {
    out.push(
      `| ${r.item} | ${r.title}${r.note ? ` (${r.note})` : ""} | ${r.client} | ${r.concurrency} | ${int(r.rps)} | ${int(r.rpsMin)}–${int(r.rpsMax)} (${r.runs}) | ${r.serverCpu === undefined || Number.isNaN(r.serverCpu) ? "–" : `${Math.round(r.serverCpu * 100)}%`} | ${r.cpuUsPerCall === undefined || Number.isNaN(r.cpuUsPerCall) ? "–" : r.cpuUsPerCall.toFixed(1)} | ${us(r.latencyUs.p50)} | ${us(r.latencyUs.p90)} | ${us(r.latencyUs.p99)} | ${ratio(r.vsCeiling)} | ${ratio(r.vsHealth)} | ${r.lookupsPer1000 === undefined ? "–" : r.lookupsPer1000.toFixed(2)} | ${r.answer} | ${ok(r.problems)} |`,
    );
  }
  return out;
}

export function renderMarkdown(report: BenchReport): string {
  const m = report.machine;
  const lines: string[] = [
    `# keyward bench — ${report.startedAt}`,
    "",
    `Measured: ${m.source}. ${m.cpus} CPUs, Node ${m.node}, ${m.h2load}; ${m.placement}. Load average before ${m.loadAverageBefore.join(" / ")}, after ${m.loadAverageAfter.join(" / ")}. ${m.note}`,
    `Whole run: ${Math.round(report.durationSeconds)} s. Settings: ${Object.entries(report.settings).map(([k, v]) => `${k}=${v}`).join(", ")}.`,
    "",
    "## Throughput",
    "",
    ...throughputTable(report.throughput),
    "",
    "## Latency",
    "",
    "| scenario | client | conc. | requests | req/s | p50 | p90 | p99 | max | lookups/request | answer | checks |",
    "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ...report.latency.map(
      (r) =>
        `| ${r.title}${r.note ? ` (${r.note})` : ""} | ${r.client} | ${r.concurrency} | ${int(r.requests)} | ${int(r.rps)} | ${us(r.latencyUs.p50)} | ${us(r.latencyUs.p90)} | ${us(r.latencyUs.p99)} | ${us(r.latencyUs.max)} | ${r.lookupsPerRequest === undefined ? "–" : r.lookupsPerRequest.toFixed(3)} | ${r.answer} | ${ok(r.problems)} |`,
    ),
    "",
    "## Memory",
    "",
    `| keyward process | before | after verifying ${int(report.memory.cachedKeys)} distinct keys |`,
    "| --- | ---: | ---: |",
    `| RSS (VmRSS) as it stands (after: once the fill's usage write-behind has been quiet for 6 s; no forced GC) | ${report.memory.rssBeforeMiB.toFixed(1)} MiB | ${report.memory.rssAfterMiB.toFixed(1)} MiB |`,
    `| RSS at rest, ${report.memory.idleSeconds} s later without calls (whatever keyward and V8 collect at idle; nothing forced${report.memory.idleGcs !== undefined && !Number.isNaN(report.memory.idleGcs) ? `; keyward's idle GCs by then: ${report.memory.idleGcs}` : ""}) | – | ${report.memory.rssIdleMiB.toFixed(1)} MiB |`,
    `| RSS right after a full GC (at the end of the run) | – | ${report.memory.rssAfterGcMiB.toFixed(1)} MiB |`,
    ...(report.memory.fileBackedMiB && report.memory.mallocMiB
      ? [
          `| of that RSS: mapped files (node binary, libraries), as it stands / after GC | ${report.memory.fileBackedMiB.before.toFixed(1)} MiB | ${report.memory.fileBackedMiB.after.toFixed(1)} / ${report.memory.fileBackedMiB.afterGc.toFixed(1)} MiB |`,
          `| of that RSS: C heap (malloc), as it stands / after GC | ${report.memory.mallocMiB.before.toFixed(1)} MiB | ${report.memory.mallocMiB.after.toFixed(1)} / ${report.memory.mallocMiB.afterGc.toFixed(1)} MiB |`,
        ]
      : []),
    `| live JS heap after a full GC (before: a fresh keyward; after: at the end of the run${report.memory.negativeKeys ? `, also holding ${int(report.memory.negativeKeys)} unknown keys` : ""}) | ${report.memory.heapBeforeMiB.toFixed(1)} MiB | ${report.memory.heapAfterMiB.toFixed(1)} MiB (${(((report.memory.heapAfterMiB - report.memory.heapBeforeMiB) * 2 ** 20) / report.memory.cachedKeys).toFixed(0)} bytes per key) |`,
    "",
    `Peak RSS (VmHWM) ${report.memory.hwmMiB.toFixed(1)} MiB. The fill ran at ${int(report.memory.fillRps)} misses/s; its usage write-behind (the count of every one of those keys) then took ${int(report.memory.usageFlush.writes)} write statements, done ${Math.max(0, report.memory.usageFlush.seconds).toFixed(1)} s after the fill; measured windows start after it. The at-rest reading comes before the warm-ups: with the idle GC (on by default; else after a wait long enough for V8's watchdog) the rows follow a memory-reducing collection at idle, which discards the hot path's optimized code (bench/README.md, "Memory probe").`,
    "",
    "## Database statements (counted on the wire between keyward and PostgreSQL)",
    "",
    "| window | calls | statements | key lookups | other reads | writes | begin/commit/other | per 1,000 calls (statements / lookups / writes) |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ...report.queries.map(
      (q) =>
        `| ${q.window} | ${int(q.calls)} | ${q.statements} | ${q.keyLookups} | ${q.otherReads} | ${q.writes} | ${q.other} | ${q.per1000.statements.toFixed(3)} / ${q.per1000.keyLookups.toFixed(3)} / ${q.per1000.writes.toFixed(3)} |`,
    ),
    "",
    "## Worker processes (KEYWARD_WORKERS)",
    "",
    ...throughputTable(report.workers),
    "",
    "## Targets (reported, never asserted)",
    "",
    "| target | measured | met |",
    "| --- | --- | --- |",
    ...report.targets.map((t) => `| ${t.target} | ${t.measured} | ${t.met === null ? "–" : t.met ? "yes" : "**no**"} |`),
    "",
  ];
  if (report.problems.length > 0) {
    lines.push("## Correctness problems", "", ...report.problems.map((p) => `- ${p}`), "");
  }
  return lines.join("\n");
}
