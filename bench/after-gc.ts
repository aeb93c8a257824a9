// Experiment: CPU per Verify hit in the rounds after a forced memory-reducing GC
// (HeapProfiler.collectGarbage), cycle after cycle, to see whether and how long
// keyward stays slower. BENCH_AFTER_GC_ENV="A=1 B=2" sets keyward settings
// (KEYWARD_V8_FLAGS=...), BENCH_AFTER_GC_TRIGGER=none runs the same rounds without the GC,
// =idle:25 waits 25 s without calls instead. BENCH_KEYWARD_OUTPUT=file keeps keyward's output
// (with --trace-opt/--trace-deopt in KEYWARD_V8_FLAGS, what V8 recompiles after the trigger).
// BENCH_AFTER_GC_SCENARIOS=check-hit,verify-hit,health runs a mixed load: each scenario in turn per
// round, the first one's CPU per call in the summary, the others' in the log.
// BENCH_AFTER_GC_CPU_PROFILE=N profiles the first scenario's run of every round (V8's sampler through
// the inspector) and prints its N top self-time functions per round, in µs per call.
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createKeyHasher, generateKey } from "../src/core/key-format.js";
import { VerifyCode } from "../src/gen/keyward/v1/keys_pb.js";
import { createAdminClient } from "./lib/admin.js";
import { ensureH2load } from "./lib/h2load.js";
import { collectGarbage, inspectorUrl, selfTimes, startCpuProfile, startGcProfile, stopGcProfile } from "./lib/inspector.js";
import { cpuSeconds, pinSelf, processMemory, startKeywardProcess } from "./lib/processes.js";
import { createScenarios, runScenario } from "./lib/scenarios.js";
import { seedSqlite } from "./lib/sqlite-seed.js";
import { loadProblems, malformedFrom, runVerifyLoad, verifyBodies } from "./lib/verify-load.js";

const env = (name: string, fallback: number) => (process.env[name] ? Number(process.env[name]) : fallback);
const KEYS = env("BENCH_CACHED_KEYS", 100_000);
const REQUESTS = env("BENCH_REQUESTS", 200_000);
const CYCLES = env("BENCH_CYCLES", 4);
const PER_CYCLE = env("BENCH_ROUNDS_PER_CYCLE", 3);
const TRIGGER = process.env.BENCH_AFTER_GC_TRIGGER ?? "inspector";
// BENCH_AFTER_GC_SCENARIOS="health,verify-hit,check-hit": a mixed load, each scenario in turn per round (CPU per call of the first).
const SCENARIOS = (process.env.BENCH_AFTER_GC_SCENARIOS ?? "verify-hit").split(",");
const PROFILE_TOP = env("BENCH_AFTER_GC_CPU_PROFILE", 0);
const EXTRA = Object.fromEntries((process.env.BENCH_AFTER_GC_ENV ?? "").split(/\s+(?=[A-Z][A-Z0-9_]*=)/).filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)]));
const log = (line: string) => process.stdout.write(`[after-gc] ${line}\n`);

ensureH2load(log);
pinSelf("1");
const work = mkdtempSync(join(tmpdir(), "keyward-after-gc-"));
const keys = Array.from({ length: KEYS }, () => generateKey());
const seed = join(work, "seed.db");
await seedSqlite(seed, keys, createKeyHasher(), ["bench:read", "bench:write"]);
const db = join(work, "kw.db");
copyFileSync(seed, db);
const kw = await startKeywardProcess({
  env: { KEYWARD_ADMIN_TOKEN: "bench-admin-token-0123456789abcdef", KEYWARD_DATABASE_URL: `sqlite:${db}`, KEYWARD_CACHE_TTL_SECONDS: "3600", ...EXTRA },
  cpus: "0",
  nodeArgs: ["--inspect=127.0.0.1:0"],
});
try {
  const baseUrl = `http://127.0.0.1:${kw.port}`;
  const bodies = verifyBodies(keys.map((k) => k.key), ["bench:read"]);
  const fill = await runVerifyLoad({ baseUrl, bodies, requests: bodies.length, connections: 4, streams: 16, expected: VerifyCode.VALID });
  if (loadProblems(fill).length > 0) throw new Error(loadProblems(fill).join("; "));
  const admin = createAdminClient(baseUrl, "bench-admin-token-0123456789abcdef");
  const hot = { verify: await admin.issue("v", ["bench:read"], 2_000_000_000), check: await admin.issue("c", ["bench:read"], 2_000_000_000) };
  const all = createScenarios({ ...hot, unknown: generateKey().key, malformed: malformedFrom(generateKey().key), scopes: ["bench:read"] }, work);
  const mix = SCENARIOS.map((id) => all.find((x) => x.id === id) ?? (() => { throw new Error(`no scenario ${id}`); })());
  const s = mix[0]!;
  const inspector = inspectorUrl(kw.output())!;
  const logFile = join(work, "h2load.log");
  for (const x of mix) await runScenario(x, { baseUrl, requests: 50_000, clients: 16, streams: 16, cpus: "1", logFile, admin });
  // Each cycle: the forced GC, then PER_CYCLE rounds; CPU per call reported by position in the cycle.
  const byPosition: number[][] = Array.from({ length: PER_CYCLE }, () => []);
  for (let cycle = 1; cycle <= CYCLES; cycle++) {
    if (TRIGGER === "inspector") {
      await collectGarbage(inspector);
      await new Promise((r) => setTimeout(r, 1000));
    } else if (TRIGGER.startsWith("idle:")) {
      // No calls for that long: whatever keyward and V8 do when idle (KEYWARD_IDLE_GC, memory reducer) happens.
      await new Promise((r) => setTimeout(r, Number(TRIGGER.slice(5)) * 1000));
    }
    for (let position = 0; position < PER_CYCLE; position++) {
      await startGcProfile(inspector);
      const profiler = PROFILE_TOP > 0 ? await startCpuProfile(inspector) : undefined;
      const before = cpuSeconds(kw.pid);
      const r = await runScenario(s, { baseUrl, requests: REQUESTS, clients: 16, streams: 16, cpus: "1", logFile, admin });
      const cpu = cpuSeconds(kw.pid) - before;
      if (profiler) {
        const top = [...selfTimes(await profiler.stop())].filter(([name]) => name !== "(idle)").slice(0, PROFILE_TOP);
        log(`cycle ${cycle} round ${position + 1} ${s.id} self time, µs/call: ${top.map(([name, us]) => `${name} ${(us / REQUESTS).toFixed(2)}`).join("; ")}`);
      }
      for (const x of mix.slice(1)) {
        const t = cpuSeconds(kw.pid);
        const rx = await runScenario(x, { baseUrl, requests: REQUESTS, clients: 16, streams: 16, cpus: "1", logFile, admin });
        if (rx.problems.length > 0) throw new Error(rx.problems.join("; "));
        log(`cycle ${cycle} round ${position + 1} ${x.id}: ${(((cpuSeconds(kw.pid) - t) / REQUESTS) * 1e6).toFixed(1)} µs/call`);
      }
      const gc = await stopGcProfile(inspector);
      if (r.problems.length > 0) throw new Error(r.problems.join("; "));
      byPosition[position]!.push((cpu / REQUESTS) * 1e6);
      if (process.env.BENCH_KEYWARD_OUTPUT) process.stdout.write(`@@ cycle ${cycle} round ${position + 1} done\n`);
      // The GC profile spans the whole round (every scenario of the mix).
      log(`cycle ${cycle} round ${position + 1}: ${((cpu / REQUESTS) * 1e6).toFixed(1)} µs/call, GC ${((gc.scavengeUs + gc.markCompactUs) / (REQUESTS * mix.length)).toFixed(2)} µs/call, ${gc.markCompacts} full GCs, ${Math.round(r.result.rps)}/s, RSS ${(processMemory(kw.pid).rss / 2 ** 20).toFixed(1)} MiB`);
    }
  }
  const med = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
  log(`median CPU µs/call by round after the ${TRIGGER === "inspector" ? "GC" : "(no) GC"}: ${byPosition.map((xs, i) => `${i + 1}: ${med(xs).toFixed(1)}`).join(", ")}`);
} finally {
  if (process.env.BENCH_KEYWARD_OUTPUT) writeFileSync(process.env.BENCH_KEYWARD_OUTPUT, kw.output());
  await kw.stop();
  rmSync(work, { recursive: true, force: true });
}
