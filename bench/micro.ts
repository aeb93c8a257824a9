// `npm run bench:micro`: what keyward's own work on a cache hit costs, stage by
// stage, with no server, no socket and no other process (see bench/README.md,
// "Own work per call"). The lean path's Verify and Check methods are built from
// the real core (key cache, verifier, rate limiter, usage recorder) around one
// cached key with a rate limit, as the bench's hot keys have; each stage runs
// in a warm loop on the bytes the bench sends. Unlike the h2load rows these
// figures barely move between runs, so they tell a change to the codecs or the
// decision apart from the host's noise; what they leave out is the GC that
// the allocation causes under load and the transport.
import { writeFileSync } from "node:fs";
import v8 from "node:v8";
import { fileURLToPath } from "node:url";
import { createOwnWork } from "./lib/own-work.js";
import { median } from "./lib/stats.js";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const CALLS = Number(process.env.BENCH_MICRO_CALLS ?? 300_000);
const resultsDir = fileURLToPath(new URL("../../../bench/results/", import.meta.url));
const { cases } = createOwnWork();

function timeOf(run: () => unknown): number {
  let sink = 0;
  const start = performance.now();
  for (let i = 0; i < CALLS; i++) if (run() !== undefined) sink++;
  const us = ((performance.now() - start) * 1000) / CALLS;
  if (sink !== CALLS) throw new Error("a stage returned nothing");
  return us;
}

/**
 * Heap bytes a stage allocates per call, collected or not: the heap's growth
 * between the GCs V8 ran meanwhile (GCProfiler reports the heap before and
 * after each) plus what is left at the end. The GC cost under load follows it.
 */
function allocatedOf(run: () => unknown): number {
  const used = () => v8.getHeapStatistics().used_heap_size;
  const profiler = new v8.GCProfiler();
  const start = used();
  profiler.start();
  for (let i = 0; i < CALLS; i++) run();
  const end = used();
  const { statistics } = profiler.stop();
  let total = 0;
  let after = start;
  for (const gc of statistics) {
    total += gc.beforeGC.heapStatistics.usedHeapSize - after;
    after = gc.afterGC.heapStatistics.usedHeapSize;
  }
  return (total + end - after) / CALLS;
}

const samples = new Map<string, number[]>(cases.map(({ rpc, stage }) => [`${rpc}|${stage}`, []]));
// Warm-up: every stage optimised before anything is timed.
for (const { run } of cases) timeOf(run);
const allocated = new Map(cases.map(({ rpc, stage, run }) => [`${rpc}|${stage}`, allocatedOf(run)]));
for (let round = 0; round < ROUNDS; round++) {
  for (const { rpc, stage, run } of cases) samples.get(`${rpc}|${stage}`)!.push(timeOf(run));
}

const lines = [
  `# keyward own work per call — ${new Date().toISOString()}`,
  "",
  `Node ${process.version}; ${CALLS.toLocaleString("en-US")} calls per stage and round, ${ROUNDS} rounds (median, range). One cached key with a rate limit; the bench's request bytes.`,
  "",
  "| RPC | stage | µs per call | bytes allocated per call |",
  "| --- | --- | ---: | ---: |",
  ...cases.map(({ rpc, stage }) => {
    const values = samples.get(`${rpc}|${stage}`)!;
    return `| ${rpc} | ${stage} | ${median(values).toFixed(3)} (${Math.min(...values).toFixed(3)}–${Math.max(...values).toFixed(3)}) | ${Math.round(allocated.get(`${rpc}|${stage}`)!)} |`;
  }),
  "",
];
const out = lines.join("\n");
process.stdout.write(out);
writeFileSync(`${resultsDir}micro-latest.md`, out);
// Counted usage is never flushed here; the process just ends.
process.exit(0);
