// `npm run bench:memory`: what keyward's memory is made of with 100,000 cached
// keys, in about a minute (see bench/README.md, "Memory probe"). Starts the
// compiled keyward as the bench does (dist/main.js, --inspect on loopback only
// to ask for GCs and read V8's figures), seeds real keys' hashes in bulk,
// caches every one through Verify misses and reports RSS fresh / as it stands
// / after a full GC, the V8 heap by space, and the live heap per cached key.
// BENCH_MEMORY_SNAPSHOT=1 adds a heap-snapshot diff (what the cached keys are
// made of); BENCH_MEMORY_MODULES=1 what each dependency costs at start-up.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createKeyHasher, generateKey } from "../src/core/key-format.js";
import { VerifyCode } from "../src/gen/keyward/v1/keys_pb.js";
import { createDatabase } from "../src/storage/database.js";
import { diffHeapSummaries, summarizeHeapSnapshot, type HeapGroup } from "./lib/heap-snapshot.js";
import { collectGarbage, inspectorUrl, readProcessMemory, writeHeapSnapshot, type ProcessMemoryReport } from "./lib/inspector.js";
import { createBenchDatabase, seedKeys } from "./lib/pg-bench.js";
import { seedSqlite } from "./lib/sqlite-seed.js";
import { residentByKind, type ResidentByKind } from "./lib/memory-maps.js";
import { processMemory, startKeywardProcess, type ChildServer } from "./lib/processes.js";
import { loadProblems, runVerifyLoad, verifyBodies } from "./lib/verify-load.js";
import { fromBinary } from "@bufbuild/protobuf";
import { CheckResponseSchema } from "../src/gen/envoy/service/auth/v3/external_auth_pb.js";
import { grpcAnswer, runHttp2Load, type Http2LoadResult } from "./lib/http2-load.js";
import { CHECK_PATH, checkBody, checkOutcome, GRPC_HEADERS } from "./lib/requests.js";

const env = (name: string, fallback: number) => (process.env[name] ? Number(process.env[name]) : fallback);
const SETTINGS = {
  keys: env("BENCH_CACHED_KEYS", 100_000),
  /** postgresql (the bench's, default) or sqlite (keyward's default database). */
  database: (process.env.BENCH_MEMORY_DB ?? "postgresql") as "postgresql" | "sqlite",
  snapshot: process.env.BENCH_MEMORY_SNAPSHOT === "1",
  /**
   * How long the "idle" reading waits after the fill: V8's memory reducer looks 8 s after its last
   * GC, keyward's idle GC wants 10 s of a quiet event loop once the usage flush is done.
   */
  idleSeconds: env("BENCH_MEMORY_IDLE_SECONDS", 30),
  modules: process.env.BENCH_MEMORY_MODULES === "1",
  /** verify (default) or check: which hot RPC fills the cache (ext_authz Check may keep per-key state of its own). */
  rpc: (process.env.BENCH_MEMORY_RPC ?? "verify") as "verify" | "check",
  /** Extra node flags for keyward, to try V8 options before shipping them. */
  nodeArgs: (process.env.BENCH_NODE_ARGS ?? "").split(/\s+/).filter(Boolean),
  /** Where to write the tail of keyward's own output (e.g. with BENCH_NODE_ARGS=--trace-gc). */
  outputFile: process.env.BENCH_KEYWARD_OUTPUT,
  /** Extra KEYWARD_* settings, "A=1 B=2". */
  keywardEnv: Object.fromEntries((process.env.BENCH_KEYWARD_ENV ?? "").split(/\s+/).filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)])),
};
const PG_URL = process.env.BENCH_PG_URL ?? process.env.KEYWARD_TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const SCOPES = ["bench:read"];
const MiB = 2 ** 20;
// V8 unmaps freed pages on a background thread, and keyward runs malloc_trim after a full GC, at most
// every 10 s (src/memory-trim.ts): after-GC readings wait for both.
const GC_SETTLE_MS = 11_000;
const root = fileURLToPath(new URL("../../..", import.meta.url));
const resultsDir = join(root, "bench/results");
const log = (line: string) => process.stdout.write(`[memory] ${line}\n`);

interface Stage {
  /** VmRSS from /proc. */
  rss: number;
  /** VmHWM from /proc. */
  hwm: number;
  maps: ResidentByKind;
  self: ProcessMemoryReport;
}

export interface MemoryProbeReport {
  source: string;
  database: string;
  rpc: string;
  keys: number;
  nodeArgs: string[];
  fillRps: number;
  /** Right after start-up, as it stands and after a full GC. */
  fresh: Stage;
  freshGc: Stage;
  /** After caching every key and the usage write-behind: as it stands, then after a full GC. */
  cached: Stage;
  /** The same after BENCH_MEMORY_IDLE_SECONDS without requests and without a forced GC (V8's memory reducer may run). */
  cachedIdle: Stage;
  cachedGc: Stage;
  liveHeapPerKey: number;
  snapshot?: { perKey: number; groups: HeapGroup[] };
  modules?: ModuleCost[];
}

async function stage(kw: ChildServer, url: string, gc: boolean): Promise<Stage> {
  if (gc) {
    await collectGarbage(url);
    await new Promise((r) => setTimeout(r, GC_SETTLE_MS));
  }
  const self = await readProcessMemory(url);
  const { rss, hwm } = processMemory(kw.pid);
  return { rss, hwm, maps: residentByKind(kw.pid), self };
}

/** Every key verified once: each a cache miss, each answer checked VALID. */
function verifyFill(baseUrl: string, keys: string[]): Promise<Http2LoadResult> {
  const bodies = verifyBodies(keys, SCOPES);
  return runVerifyLoad({ baseUrl, bodies, requests: bodies.length, connections: 4, streams: 16, expected: VerifyCode.VALID });
}

/** Every key checked once through ext_authz (an Envoy-shaped CheckRequest), each answer checked allowed. */
function checkFill(baseUrl: string, keys: string[]): Promise<Http2LoadResult> {
  const bodies = keys.map((key) => checkBody(key, SCOPES));
  return runHttp2Load({
    baseUrl,
    path: CHECK_PATH,
    headers: { ...GRPC_HEADERS },
    bodies,
    requests: bodies.length,
    connections: 4,
    streams: 16,
    check: grpcAnswer((payload) => {
      const outcome = checkOutcome(fromBinary(CheckResponseSchema, payload));
      return outcome === "allowed" ? undefined : `answer ${outcome}, not allowed`;
    }),
  });
}

/** Waits until every counted use is written behind (usage pending 0 on /metrics). */
async function usageFlushed(baseUrl: string, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    const text = await (await fetch(`${baseUrl}/metrics`)).text();
    const pending = Number(/^keyward_usage_pending_keys (\S+)$/m.exec(text)?.[1] ?? NaN);
    if (pending === 0) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error("usage write-behind did not finish");
}

export interface ModuleCost {
  module: string;
  rss: number;
  heapUsed: number;
  external: number;
}

// What keyward's entry points and dependencies cost to load, each in a fresh node after a full GC.
const MODULES = [
  "(node, nothing imported)",
  "@bufbuild/protobuf",
  "@connectrpc/connect",
  "@connectrpc/connect-node",
  "@mikro-orm/core",
  "@mikro-orm/migrations",
  "@mikro-orm/sqlite",
  "@mikro-orm/postgresql",
  "pg",
  "pino",
  "prom-client",
  "lru-cache",
  "yaml",
  "./dist/gen/keyward/v1/keys_pb.js",
  "./dist/gen/envoy/service/auth/v3/external_auth_pb.js",
  "./dist/app.js",
];

function moduleCosts(): ModuleCost[] {
  return MODULES.map((module) => {
    const load = module.startsWith("(") ? "" : `await import(${JSON.stringify(module)});`;
    const script = `${load} globalThis.gc(); globalThis.gc(); const m = process.memoryUsage(); console.log(JSON.stringify({ rss: m.rss, heapUsed: m.heapUsed, external: m.external }));`;
    const out = execFileSync(process.execPath, ["--expose-gc", "--input-type=module", "-e", script], { cwd: root }).toString();
    return { module, ...(JSON.parse(out) as Omit<ModuleCost, "module">) };
  });
}

async function main(): Promise<void> {
  const source = describeSource();
  const keys = Array.from({ length: SETTINGS.keys }, () => generateKey());
  const servers: ChildServer[] = [];
  let cleanup = async () => {};
  const report: Partial<MemoryProbeReport> = { source, database: SETTINGS.database, rpc: SETTINGS.rpc, keys: SETTINGS.keys, nodeArgs: SETTINGS.nodeArgs };
  const work = mkdtempSync(join(tmpdir(), "keyward-memory-"));
  try {
    let databaseUrl: string;
    const seedStart = Date.now();
    if (SETTINGS.database === "postgresql") {
      const db = await createBenchDatabase(PG_URL);
      cleanup = () => db.drop();
      const migrator = await createDatabase({ url: db.url });
      await migrator.migrate();
      await migrator.close();
      await seedKeys(db.url, { keys, hasher: createKeyHasher(), fillerRows: 0, scopes: ["bench:read", "bench:write"] });
      databaseUrl = db.url;
    } else {
      const path = join(work, "keyward.db");
      await seedSqlite(path, keys, createKeyHasher(), ["bench:read", "bench:write"]);
      databaseUrl = `sqlite:${path}`;
    }
    log(`${SETTINGS.database}: ${SETTINGS.keys} keys seeded in ${((Date.now() - seedStart) / 1000).toFixed(1)} s`);

    const keywardEnv = {
      KEYWARD_ADMIN_TOKEN: "bench-admin-token-0123456789abcdef",
      KEYWARD_DATABASE_URL: databaseUrl,
      // As in the bench: no entry expires while it is measured.
      KEYWARD_CACHE_TTL_SECONDS: "3600",
      KEYWARD_NEGATIVE_CACHE_TTL_SECONDS: "3600",
      ...SETTINGS.keywardEnv,
    };
    const start = () => startKeywardProcess({ env: keywardEnv, nodeArgs: [...SETTINGS.nodeArgs, "--inspect=127.0.0.1:0"] });
    const kw = await start();
    servers.push(kw);
    const inspector = inspectorUrl(kw.output());
    if (!inspector) throw new Error(`no inspector URL in keyward's output:\n${kw.output()}`);
    const baseUrl = `http://127.0.0.1:${kw.port}`;
    // Let start-up work (migration check, first flush timer) settle.
    await new Promise((r) => setTimeout(r, 1000));
    report.fresh = await stage(kw, inspector, false);
    report.freshGc = await stage(kw, inspector, true);

    const fill = SETTINGS.rpc === "check" ? await checkFill(baseUrl, keys.map((k) => k.key)) : await verifyFill(baseUrl, keys.map((k) => k.key));
    const problems = loadProblems(fill);
    if (problems.length > 0) throw new Error(`cache fill: ${problems.join("; ")}`);
    report.fillRps = fill.rps;
    await usageFlushed(baseUrl, 120_000);
    log(`cached ${keys.length} keys (${SETTINGS.rpc}) at ${Math.round(fill.rps)} misses/s; usage written behind`);
    report.cached = await stage(kw, inspector, false);
    await new Promise((r) => setTimeout(r, SETTINGS.idleSeconds * 1000));
    report.cachedIdle = await stage(kw, inspector, false);
    report.cachedGc = await stage(kw, inspector, true);
    if (SETTINGS.outputFile) writeFileSync(SETTINGS.outputFile, kw.output());
    report.liveHeapPerKey = (report.cachedGc.self.heapUsed - report.freshGc.self.heapUsed) / SETTINGS.keys;
    if (SETTINGS.snapshot) {
      // Only after every reading: writing a snapshot allocates ~3× the heap in C++ structures, which
      // the C allocator then keeps (it added ~100 MiB to RSS). The fresh side comes from a second,
      // idle keyward with the same configuration.
      const snapshotDir = join(resultsDir, "tmp");
      mkdirSync(snapshotDir, { recursive: true });
      await writeHeapSnapshot(inspector, join(snapshotDir, "memory-cached.heapsnapshot"));
      // One at a time: a SQLite database admits one keyward.
      if ((await kw.stop()) !== 0) throw new Error("keyward did not exit 0");
      servers.length = 0;
      const idle = await start();
      servers.push(idle);
      await new Promise((r) => setTimeout(r, 1000));
      await writeHeapSnapshot(inspectorUrl(idle.output())!, join(snapshotDir, "memory-fresh.heapsnapshot"));
      await idle.stop();
      servers.splice(servers.indexOf(idle), 1);
      const groups = diffHeapSummaries(
        summarizeHeapSnapshot(join(snapshotDir, "memory-fresh.heapsnapshot")),
        summarizeHeapSnapshot(join(snapshotDir, "memory-cached.heapsnapshot")),
      );
      report.snapshot = { perKey: groups.reduce((sum, g) => sum + g.selfBytes, 0) / SETTINGS.keys, groups: groups.slice(0, 30) };
    }
    if (servers.includes(kw)) {
      const code = await kw.stop();
      servers.length = 0;
      if (code !== 0) throw new Error(`keyward exited with ${code}`);
    }
    if (SETTINGS.modules) report.modules = moduleCosts();
  } finally {
    for (const s of servers) await s.stop();
    await cleanup();
    rmSync(work, { recursive: true, force: true });
  }
  const full = report as MemoryProbeReport;
  const markdown = render(full);
  process.stdout.write(`\n${markdown}\n`);
  mkdirSync(resultsDir, { recursive: true });
  // Also by database and RPC, so the variants' latest results sit side by side.
  for (const name of ["memory-latest", `memory-${full.database}-${full.rpc}`]) {
    writeFileSync(join(resultsDir, `${name}.md`), markdown + "\n");
    writeFileSync(join(resultsDir, `${name}.json`), JSON.stringify(full, null, 2) + "\n");
  }
}

const mib = (bytes: number) => `${(bytes / MiB).toFixed(1)}`;

function render(r: MemoryProbeReport): string {
  const stages: [string, Stage][] = [
    ["fresh", r.fresh],
    ["fresh, after GC", r.freshGc],
    [`${r.keys.toLocaleString("en-US")} keys cached`, r.cached],
    [`idle ${SETTINGS.idleSeconds} s`, r.cachedIdle],
    [`after a full GC`, r.cachedGc],
  ];
  const row = (cells: string[]) => `| ${cells.join(" | ")} |`;
  const lines = [
    `# keyward memory probe`,
    ``,
    `${r.source}; ${r.database}; filled through ${r.rpc}; node ${process.version}${r.nodeArgs.length ? `; node flags ${r.nodeArgs.join(" ")}` : ""}; cache filled at ${Math.round(r.fillRps)} misses/s.`,
    ``,
    `**RSS with ${r.keys.toLocaleString("en-US")} cached keys: ${mib(r.cached.rss)} MiB as it stands right after caching them (${(r.cached.rss / 1e6).toFixed(1)} MB), ${mib(r.cachedIdle.rss)} MiB ${SETTINGS.idleSeconds} s later (${(r.cachedIdle.rss / 1e6).toFixed(1)} MB), ${mib(r.cachedGc.rss)} MiB after a full GC (${(r.cachedGc.rss / 1e6).toFixed(1)} MB); live heap ${r.liveHeapPerKey.toFixed(0)} bytes per key.**`,
    ``,
    `MiB | ${stages.map(([name]) => name).join(" | ")}`,
    `--- | ${stages.map(() => "---:").join(" | ")}`,
    `RSS (VmRSS) | ${stages.map(([, s]) => mib(s.rss)).join(" | ")}`,
    `peak RSS (VmHWM) | ${stages.map(([, s]) => mib(s.hwm)).join(" | ")}`,
    `V8 heap committed (heapTotal) | ${stages.map(([, s]) => mib(s.self.heapTotal)).join(" | ")}`,
    `V8 heap used | ${stages.map(([, s]) => mib(s.self.heapUsed)).join(" | ")}`,
    `V8 heap resident (total_physical_size) | ${stages.map(([, s]) => mib(s.self.totalPhysicalSize)).join(" | ")}`,
    `external (Buffers, ArrayBuffers) | ${stages.map(([, s]) => mib(s.self.external)).join(" | ")}`,
    `V8 malloced | ${stages.map(([, s]) => mib(s.self.mallocedMemory)).join(" | ")}`,
    `RSS − V8 heap resident − external | ${stages.map(([, s]) => mib(s.rss - s.self.totalPhysicalSize - s.self.external)).join(" | ")}`,
    `RSS: file-backed (node binary, libraries) | ${stages.map(([, s]) => mib(s.maps.file)).join(" | ")}`,
    `RSS: malloc, brk heap | ${stages.map(([, s]) => mib(s.maps.brk)).join(" | ")}`,
    `RSS: malloc, thread arenas | ${stages.map(([, s]) => mib(s.maps.mallocArenas)).join(" | ")}`,
    `RSS: other anonymous (V8 heap pages, stacks) | ${stages.map(([, s]) => mib(s.maps.otherAnon)).join(" | ")}`,
    ``,
    `V8 heap spaces (MiB, size / used) | ${stages.map(([name]) => name).join(" | ")}`,
    `--- | ${stages.map(() => "---:").join(" | ")}`,
    ...r.fresh.self.spaces.map((space, i) =>
      `${space.name} | ${stages.map(([, s]) => `${mib(s.self.spaces[i]!.size)} / ${mib(s.self.spaces[i]!.used)}`).join(" | ")}`,
    ),
  ];
  if (r.snapshot) {
    lines.push(
      ``,
      `Heap snapshot diff (this keyward with the keys cached − a fresh idle one, self sizes; snapshots GC first): ${r.snapshot.perKey.toFixed(0)} bytes per key.`,
      ``,
      row(["what", "count", "per key", "bytes per key", "MiB"]),
      row(["---", "---:", "---:", "---:", "---:"]),
      ...r.snapshot.groups.map((g) =>
        row([g.name.replace(/\|/g, "\\|"), String(g.count), (g.count / r.keys).toFixed(2), (g.selfBytes / r.keys).toFixed(1), mib(g.selfBytes)]),
      ),
    );
  }
  if (r.modules) {
    const base = r.modules[0]!;
    lines.push(
      ``,
      `Start-up cost of each module, alone in a fresh node after a full GC (MiB; the first row is node itself, the others add to it):`,
      ``,
      row(["module", "RSS", "+RSS", "heap used", "+heap"]),
      row(["---", "---:", "---:", "---:", "---:"]),
      ...r.modules.map((m) => row([m.module, mib(m.rss), mib(m.rss - base.rss), mib(m.heapUsed), mib(m.heapUsed - base.heapUsed)])),
    );
  }
  return lines.join("\n");
}

function describeSource(): string {
  try {
    const git = (...args: string[]) => execFileSync("git", args, { cwd: root }).toString().trim();
    const commit = git("rev-parse", "--short", "HEAD");
    const dirty = git("status", "--porcelain", "--", "src").split("\n").filter(Boolean).length;
    return dirty === 0 ? `commit ${commit}` : `commit ${commit} plus ${dirty} uncommitted change(s) under src/`;
  } catch {
    return "unknown (not a git work tree)";
  }
}

await main();
