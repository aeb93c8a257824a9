// `npm run bench:flags`: what node/V8 flag sets cost and save on the hot
// path (see bench/README.md, "Node flags"). One keyward per flag set (each on
// its own copy of a SQLite database with BENCH_CACHED_KEYS keys, every key
// cached first, so GC works on a realistic heap), all pinned to CPU 0 and
// driven in turn from CPU 1 with h2load: Verify and Check cache hits, rounds
// interleaved across the sets so machine noise hits every set alike. Reports
// server CPU per call, req/s and RSS as it stands after each set's rounds.
//
// BENCH_FLAG_SETS: flag sets separated by ";", each passed as KEYWARD_V8_FLAGS
// ("" = V8's own defaults); the word `keyward` stands for keyward's default
// (KEYWARD_V8_FLAGS unset), and beside other flags adds keyward's defaults to
// them. Default: "keyward;" (keyward's flags vs none).
// NAME=value words in a set are keyward settings for its process instead:
// "KEYWARD_MALLOC_TRIM=off keyward" is keyward's flags without malloc_trim.
// BENCH_BASELINE: another checkout (its built dist/) whose keyward runs every
// flag set too, interleaved the same way: an A/B of two builds.
// BENCH_IDLE_SECONDS: a spell without calls after the last set's cache fill,
// before the warm-ups (what a burst after a quiet period meets: keyward's idle
// GC, V8's memory reducer); each set's RSS and idle GC count are logged after it.
// E.g. the idle GC's lasting cost, with only keyward able to collect:
// BENCH_FLAG_SETS="KEYWARD_IDLE_GC=true keyward --no-memory-reducer;KEYWARD_IDLE_GC=false keyward --no-memory-reducer".
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createKeyHasher, generateKey } from "../src/core/key-format.js";
import { VerifyCode } from "../src/gen/keyward/v1/keys_pb.js";
import { createAdminClient, readIdleGcs } from "./lib/admin.js";
import { ensureH2load } from "./lib/h2load.js";
import { collectGarbage, inspectorUrl, startGcProfile, stopGcProfile } from "./lib/inspector.js";
import { cpuSeconds, machineLoad, pinSelf, processMemory, startKeywardProcess, type ChildServer } from "./lib/processes.js";
import { createScenarios, runScenario, type Scenario } from "./lib/scenarios.js";
import { seedSqlite } from "./lib/sqlite-seed.js";
import { median } from "./lib/stats.js";
import { DEFAULT_V8_FLAGS } from "../src/v8-flags.js";
import { loadProblems, malformedFrom, runVerifyLoad, verifyBodies } from "./lib/verify-load.js";

const env = (name: string, fallback: number) => (process.env[name] ? Number(process.env[name]) : fallback);
const SETTINGS = {
  keys: env("BENCH_CACHED_KEYS", 100_000),
  rounds: env("BENCH_ROUNDS", 5),
  requests: env("BENCH_REQUESTS", 200_000),
  sets: (process.env.BENCH_FLAG_SETS ?? "keyward;").split(";").map((s) => s.trim()),
  baseline: process.env.BENCH_BASELINE ? resolve(process.env.BENCH_BASELINE) : undefined,
  idleSeconds: env("BENCH_IDLE_SECONDS", 0),
  /** Where to write each keyward's output (the tail), e.g. with --trace-gc in a set. */
  outputDir: process.env.BENCH_KEYWARD_OUTPUT_DIR,
};
const ADMIN_TOKEN = "bench-admin-token-0123456789abcdef";
const SCOPES = ["bench:read"];
const MiB = 2 ** 20;
const resultsDir = fileURLToPath(new URL("../../../bench/results/", import.meta.url));
const log = (line: string) => process.stdout.write(`[flags] ${line}\n`);

interface SetRun {
  flags: string;
  /** True for BENCH_BASELINE's build, false for this checkout's. */
  baseline: boolean;
  kw: ChildServer;
  baseUrl: string;
  scenarios: Scenario[];
  admin: ReturnType<typeof createAdminClient>;
  inspector: string;
  cpuPerCall: Record<string, number[]>;
  /** Main-thread GC time per call, µs, and full GCs per 100k calls. */
  gcPerCall: Record<string, number[]>;
  fullGcs: Record<string, number[]>;
  rps: Record<string, number[]>;
  rss: number;
  rssAfterGc: number;
}

async function main(): Promise<void> {
  ensureH2load(log);
  const load = machineLoad();
  const pinnedLoad = load.cpus >= 2 && pinSelf("1");
  const serverCpus = pinnedLoad ? "0" : undefined;
  const loadCpus = pinnedLoad ? "1" : undefined;
  const work = mkdtempSync(join(tmpdir(), "keyward-flags-"));
  const keys = Array.from({ length: SETTINGS.keys }, () => generateKey());
  const seed = join(work, "seed.db");
  await seedSqlite(seed, keys, createKeyHasher(), ["bench:read", "bench:write"]);
  const bodies = verifyBodies(keys.map((k) => k.key), SCOPES);
  const runs: SetRun[] = [];
  // Each set's state after BENCH_IDLE_SECONDS without calls.
  const idleNotes: string[] = [];
  try {
    const builds = SETTINGS.baseline ? [undefined, SETTINGS.baseline] : [undefined];
    const sets = builds.flatMap((build) => SETTINGS.sets.map((flags) => ({ flags, build })));
    for (const [i, { flags, build }] of sets.entries()) {
      const tag = { flags, baseline: build !== undefined };
      const db = join(work, `set-${i}.db`);
      copyFileSync(seed, db);
      const kw = await startKeywardProcess({
        env: {
          KEYWARD_ADMIN_TOKEN: ADMIN_TOKEN,
          KEYWARD_DATABASE_URL: `sqlite:${db}`,
          KEYWARD_CACHE_TTL_SECONDS: "3600",
          KEYWARD_NEGATIVE_CACHE_TTL_SECONDS: "3600",
          ...setEnv(flags),
        },
        cpus: serverCpus,
        nodeArgs: ["--inspect=127.0.0.1:0"],
        main: build && join(build, "dist/main.js"),
      });
      const baseUrl = `http://127.0.0.1:${kw.port}`;
      const fill = await runVerifyLoad({ baseUrl, bodies, requests: bodies.length, connections: 4, streams: 16, expected: VerifyCode.VALID });
      const problems = loadProblems(fill);
      if (problems.length > 0) throw new Error(`cache fill (${flags}): ${problems.join("; ")}`);
      const admin = createAdminClient(baseUrl, ADMIN_TOKEN);
      const hot = {
        verify: await admin.issue("flags verify", ["bench:read", "bench:write"], 2_000_000_000),
        check: await admin.issue("flags check", ["bench:read", "bench:write"], 2_000_000_000),
      };
      const dir = join(work, `set-${i}`);
      mkdirSync(dir);
      const scenarios = createScenarios({ ...hot, unknown: generateKey().key, malformed: malformedFrom(generateKey().key), scopes: SCOPES }, dir).filter(
        (s) => s.id === "verify-hit" || s.id === "check-hit",
      );
      const inspector = inspectorUrl(kw.output());
      if (!inspector) throw new Error(`no inspector URL in keyward's output (${label(tag)})`);
      runs.push({ ...tag, kw, baseUrl, scenarios, admin, inspector, cpuPerCall: {}, gcPerCall: {}, fullGcs: {}, rps: {}, rss: 0, rssAfterGc: 0 });
      log(`set ${label(tag)}: ${SETTINGS.keys} keys cached at ${Math.round(fill.rps)}/s; RSS ${(processMemory(kw.pid).rss / MiB).toFixed(1)} MiB`);
    }
    if (SETTINGS.idleSeconds > 0) {
      log(`idle ${SETTINGS.idleSeconds} s`);
      await new Promise((r) => setTimeout(r, SETTINGS.idleSeconds * 1000));
      for (const run of runs) {
        const idleGcs = await readIdleGcs(run.baseUrl);
        idleNotes.push(`${label(run)}: RSS ${(processMemory(run.kw.pid).rss / MiB).toFixed(1)} MiB, ${Number.isNaN(idleGcs) ? "idle GC off" : `${idleGcs} idle GC(s)`}`);
        log(`set ${idleNotes.at(-1)} after the idle spell`);
      }
    }
    const logFile = join(work, "h2load.log");
    // Warm-up: let V8 optimise each set's hot path before anything is measured.
    for (const run of runs) {
      for (const s of run.scenarios) {
        const warm = await runScenario(s, { baseUrl: run.baseUrl, requests: 50_000, clients: 16, streams: 16, cpus: loadCpus, logFile, admin: run.admin });
        if (warm.problems.length > 0) throw new Error(`warm-up ${s.id} (${run.flags}): ${warm.problems.join("; ")}`);
      }
    }
    for (let round = 1; round <= SETTINGS.rounds; round++) {
      for (const run of runs) {
        for (const s of run.scenarios) {
          await startGcProfile(run.inspector);
          const before = cpuSeconds(run.kw.pid);
          const r = await runScenario(s, { baseUrl: run.baseUrl, requests: SETTINGS.requests, clients: 16, streams: 16, cpus: loadCpus, logFile, admin: run.admin });
          const cpu = cpuSeconds(run.kw.pid) - before;
          const gc = await stopGcProfile(run.inspector);
          if (r.problems.length > 0) throw new Error(`${s.id} (${run.flags}): ${r.problems.join("; ")}`);
          (run.cpuPerCall[s.id] ??= []).push((cpu / SETTINGS.requests) * 1e6);
          (run.gcPerCall[s.id] ??= []).push((gc.scavengeUs + gc.markCompactUs) / SETTINGS.requests);
          (run.fullGcs[s.id] ??= []).push((gc.markCompacts * 100_000) / SETTINGS.requests);
          (run.rps[s.id] ??= []).push(r.result.rps);
        }
        run.rss = processMemory(run.kw.pid).rss;
        log(
          `round ${round} ${label(run)}: ${run.scenarios
            .map((s) => `${s.id} ${run.cpuPerCall[s.id]!.at(-1)!.toFixed(1)} µs/call (GC ${run.gcPerCall[s.id]!.at(-1)!.toFixed(2)}), ${Math.round(run.rps[s.id]!.at(-1)!)}/s`)
            .join("; ")}; RSS ${(run.rss / MiB).toFixed(1)} MiB`,
        );
      }
    }
    for (const run of runs) {
      await collectGarbage(run.inspector);
      await new Promise((r) => setTimeout(r, 1000));
      run.rssAfterGc = processMemory(run.kw.pid).rss;
    }
  } finally {
    if (SETTINGS.outputDir) {
      mkdirSync(SETTINGS.outputDir, { recursive: true });
      for (const [i, run] of runs.entries()) writeFileSync(join(SETTINGS.outputDir, `set-${i}.log`), run.kw.output());
    }
    for (const run of runs) await run.kw.stop();
    rmSync(work, { recursive: true, force: true });
  }

  const range = (xs: number[], digits: number) => `${median(xs).toFixed(digits)} (${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)})`;
  const ids = runs[0]!.scenarios.map((s) => s.id);
  const lines = [
    `# keyward under node flag sets`,
    ``,
    `${SETTINGS.baseline ? `Builds: this checkout, and the baseline ${SETTINGS.baseline} (its own dist/). ` : ""}${SETTINGS.keys.toLocaleString("en-US")} keys cached (SQLite), ${SETTINGS.rounds} interleaved rounds of ${SETTINGS.requests.toLocaleString("en-US")} h2load requests (16×16) per scenario; ${pinnedLoad ? "keyward on CPU 0, h2load on CPU 1" : "unpinned"}; load average ${load.loadAverage.join(" ")} at start. Medians (range).`,
    ``,
    ...(idleNotes.length > 0 ? [`A spell of ${SETTINGS.idleSeconds} s without calls followed the last cache fill, before the warm-ups; after it: ${idleNotes.join("; ")}.`, ``] : []),
    `| flags (KEYWARD_V8_FLAGS) | ${ids.map((id) => `${id}: CPU µs/call | GC µs/call | full GCs per 100k | req/s`).join(" | ")} | RSS after the rounds | after a full GC |`,
    `| --- | ${ids.map(() => "---: | ---: | ---: | ---:").join(" | ")} | ---: | ---: |`,
    ...runs.map(
      (run) =>
        `| ${run.baseline ? "baseline: " : ""}${run.flags === "keyward" ? "keyward's default" : run.flags === "" ? "(none: V8 defaults)" : `\`${run.flags}\``} | ${ids
          .map((id) => `${range(run.cpuPerCall[id]!, 1)} | ${range(run.gcPerCall[id]!, 2)} | ${median(run.fullGcs[id]!).toFixed(1)} | ${range(run.rps[id]!, 0)}`)
          .join(" | ")} | ${(run.rss / MiB).toFixed(1)} MiB | ${(run.rssAfterGc / MiB).toFixed(1)} MiB |`,
    ),
  ];
  const markdown = lines.join("\n");
  process.stdout.write(`\n${markdown}\n`);
  mkdirSync(resultsDir, { recursive: true });
  writeFileSync(join(resultsDir, "flags-latest.md"), markdown + "\n");
}

/** A set's NAME=value words are keyward settings (e.g. KEYWARD_MALLOC_TRIM=off), the rest its KEYWARD_V8_FLAGS. */
function setEnv(set: string): Record<string, string> {
  const env: Record<string, string> = {};
  const flags: string[] = [];
  for (const word of set.split(/\s+/).filter(Boolean)) {
    const m = /^([A-Z][A-Z0-9_]*)=(.*)$/.exec(word);
    if (m) env[m[1]!] = m[2]!;
    else flags.push(word);
  }
  if (flags.length === 1 && flags[0] === "keyward") return env;
  // Beside other flags, `keyward` stands for keyward's default flags.
  const v8 = flags.flatMap((flag) => (flag === "keyward" ? DEFAULT_V8_FLAGS : [flag])).join(" ");
  return { ...env, KEYWARD_V8_FLAGS: v8 };
}

function label(run: { flags: string; baseline: boolean }): string {
  return `${run.baseline ? "baseline " : ""}${JSON.stringify(run.flags)}`;
}

await main();
