// `npm run bench:profile`: where a cache hit's CPU time goes. Starts keyward
// (SQLite in memory: a hit never reaches the database) under `node
// --cpu-prof`, once per scenario, drives it with h2load like the bench does,
// stops it (the profile is written at exit) and prints the top self-time
// frames, by function and by area (node:http2 internals, keyward, protobuf-es,
// GC...). Written to bench/results/profile-latest.md.
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { generateKey } from "../src/core/key-format.js";
import { createAdminClient } from "./lib/admin.js";
import { ensureH2load } from "./lib/h2load.js";
import { machineLoad, pinSelf, startCeilingProcess, startKeywardProcess } from "./lib/processes.js";
import { createScenarios, runScenario, type ScenarioId } from "./lib/scenarios.js";
import { malformedFrom } from "./lib/verify-load.js";

const ADMIN_TOKEN = "bench-admin-token-0123456789abcdef";
// keyward answers ~100k calls/s: fewer calls and its start-up (~1 s of module loading) dominates the per-call figures.
const REQUESTS = Number(process.env.BENCH_PROFILE_REQUESTS ?? 1_000_000);
const resultsDir = fileURLToPath(new URL("../../../bench/results/", import.meta.url));

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

function area(url: string, name: string): string {
  if (name.startsWith("(")) return name;
  // keyward's build (dist/), or the bench's own copy of src/ (the transport-alone server).
  if (/\/dist\/(bench\/src\/)?(transport|core)\//.test(url)) return "keyward src";
  if (url.includes("@bufbuild/protobuf")) return "protobuf-es";
  if (url.includes("lru-cache")) return "lru-cache";
  if (url.includes("node_modules")) return "other packages";
  if (url.startsWith("node:internal/http2") || url.includes("internal/http2")) return "node:http2 (JS)";
  if (url.startsWith("node:")) return "node core (JS)";
  if (url === "") return "native / V8 builtins";
  return "other";
}

interface Summary {
  lines: string[];
  /** Self time per area, µs per call. */
  areas: Map<string, number>;
  busyPerCall: number;
}

function summarize(profile: CpuProfile, top: number, calls: number): Summary {
  const byNode = new Map<number, ProfileNode>(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i] ?? 0;
    self.set(id, (self.get(id) ?? 0) + dt);
    total += dt;
  });
  const frames = new Map<string, number>();
  const areas = new Map<string, number>();
  for (const [id, us] of self) {
    const { functionName, url, lineNumber } = byNode.get(id)!.callFrame;
    const file = url.replace(/^.*\/(node_modules\/|dist\/)/, "$1");
    const key = `${functionName || "(anonymous)"} ${file ? `${file}:${lineNumber + 1}` : ""}`.trim();
    frames.set(key, (frames.get(key) ?? 0) + us);
    const a = area(url, functionName);
    areas.set(a, (areas.get(a) ?? 0) + us);
  }
  const idle = areas.get("(idle)") ?? 0;
  areas.delete("(idle)");
  frames.delete("(idle)");
  const busy = total - idle;
  const pct = (us: number) => `${((us / busy) * 100).toFixed(1)}%`;
  const perCall = (us: number) => (us / calls).toFixed(2);
  const lines = [
    `Sampled ${(total / 1e6).toFixed(1)} s, ${(busy / 1e6).toFixed(1)} s of it busy: **${perCall(busy)} µs of CPU per call** (start-up and the warm-up included).`,
    "",
    "| area | share of busy time | µs per call |",
    "| --- | ---: | ---: |",
    ...[...areas].sort((a, b) => b[1] - a[1]).map(([a, us]) => `| ${a} | ${pct(us)} | ${perCall(us)} |`),
    "",
    "| top self-time frames | share of busy time | µs per call |",
    "| --- | ---: | ---: |",
    ...[...frames].sort((a, b) => b[1] - a[1]).slice(0, top).map(([f, us]) => `| \`${f.replace(/\|/g, "\\|")}\` | ${pct(us)} | ${perCall(us)} |`),
  ];
  return { lines, areas: new Map([...areas].map(([a, us]) => [a, us / calls])), busyPerCall: busy / calls };
}

interface Profiled {
  title: string;
  rps: number;
  summary: Summary;
  problems: string[];
}

/** Runs `id` against a fresh process started with --cpu-prof; the ceiling server, keyward's bare transport or keyward. */
async function profileScenario(id: ScenarioId, pinned: boolean, keepDir: string): Promise<Profiled> {
  const dir = mkdtempSync(join(tmpdir(), "keyward-prof-"));
  try {
    const nodeArgs = ["--cpu-prof", `--cpu-prof-dir=${dir}`];
    const cpus = pinned ? "0" : undefined;
    const kw = await startKeywardProcess({ env: { KEYWARD_DATABASE_URL: "sqlite::memory:", KEYWARD_ADMIN_TOKEN: ADMIN_TOKEN }, cpus, nodeArgs: id === "ceiling" || id === "transport" ? [] : nodeArgs });
    const ceiling =
      id === "ceiling"
        ? await startCeilingProcess(cpus, nodeArgs)
        : id === "transport"
          ? await startCeilingProcess(cpus, nodeArgs, "transport")
          : undefined;
    const kwUrl = `http://127.0.0.1:${kw.port}`;
    const admin = createAdminClient(kwUrl, ADMIN_TOKEN);
    const keys = {
      verify: await admin.issue("profile verify", ["bench:read"], 2_000_000_000),
      check: await admin.issue("profile check", ["bench:read"], 2_000_000_000),
      unknown: generateKey().key,
      malformed: malformedFrom(generateKey().key),
      scopes: ["bench:read"],
    };
    const scenario = createScenarios(keys, dir).find((s) => s.id === id)!;
    const baseUrl = ceiling ? `http://127.0.0.1:${ceiling.port}` : kwUrl;
    const options = { baseUrl, clients: 16, streams: 16, cpus: pinned ? "1" : undefined, logFile: join(dir, "h2load.log"), admin };
    await runScenario(scenario, { ...options, requests: 5_000 });
    const run = await runScenario(scenario, { ...options, requests: REQUESTS });
    const profiled = ceiling ?? kw;
    const code = await profiled.stop();
    if (ceiling) await kw.stop();
    // keyward re-executes itself with its V8 flags (same pid), and node can write a
    // profile of the short life before that too: the largest file is the server's.
    const file = readdirSync(dir)
      .filter((f) => f.endsWith(".cpuprofile"))
      .sort((a, b) => statSync(join(dir, b)).size - statSync(join(dir, a)).size)[0];
    if (!file) throw new Error(`no profile written (exit ${code})`);
    copyFileSync(join(dir, file), join(keepDir, `${id}.cpuprofile`));
    const profile = JSON.parse(readFileSync(join(dir, file), "utf8")) as CpuProfile;
    return { title: scenario.title, rps: run.result.rps, summary: summarize(profile, 25, REQUESTS + 5_001), problems: run.problems };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  ensureH2load();
  const load = machineLoad();
  const pinned = load.cpus >= 2 && pinSelf("1");
  const lines = [
    `# keyward CPU profile — ${new Date().toISOString()}`,
    "",
    `${load.cpus} CPUs, load average ${load.loadAverage.join(" / ")}; keyward ${pinned ? "on CPU 0, h2load on CPU 1" : "unpinned"}; Node ${process.version}.`,
    "",
  ];
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  const keepDir = join(resultsDir, "tmp", `profiles-${stamp}`);
  mkdirSync(keepDir, { recursive: true });
  const ids = ["ceiling", "transport", "health", "verify-hit", "check-hit"] as const;
  const results: Profiled[] = [];
  for (const id of ids) results.push(await profileScenario(id, pinned, keepDir));
  const areas = [...new Set(results.flatMap((r) => [...r.summary.areas.keys()]))];
  lines.push(
    "## CPU per call, by area (µs)",
    "",
    `| area | ${results.map((r) => r.title.split(":")[0]).join(" | ")} |`,
    `| --- | ${results.map(() => "---:").join(" | ")} |`,
    `| **busy, total** | ${results.map((r) => `**${r.summary.busyPerCall.toFixed(1)}**`).join(" | ")} |`,
    ...areas.map((a) => `| ${a} | ${results.map((r) => (r.summary.areas.get(a) ?? 0).toFixed(2)).join(" | ")} |`),
    "",
    `Profiles (open in Chrome DevTools or speedscope): \`bench/results/tmp/profiles-${stamp}/\`.`,
    "",
  );
  for (const r of results) {
    lines.push(
      `## ${r.title}`,
      "",
      `${REQUESTS.toLocaleString("en-US")} requests at ${Math.round(r.rps).toLocaleString("en-US")} req/s under the profiler (which slows it); checks: ${r.problems.length === 0 ? "✓" : r.problems.join("; ")}.`,
      "",
      ...r.summary.lines,
      "",
    );
  }
  const md = lines.join("\n");
  mkdirSync(resultsDir, { recursive: true });
  writeFileSync(join(resultsDir, "profile-latest.md"), md);
  process.stdout.write(`${md}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`[profile] failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
