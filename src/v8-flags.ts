// The V8 heap settings the server runs with. V8 sizes its heap only at
// start-up, so `keyward serve` and dist/main.js re-execute themselves with
// these flags before loading anything else (process.execve: the same process
// and pid, so supervisors and signals see no difference), whichever way they
// were started: npm start, the Docker image, the `keyward` bin, node:cluster
// workers (they inherit the flags and need no re-exec).
//
// Measured with `npm run bench:memory` and `npm run bench:flags` (see
// bench/README.md) while node:http2 still carried every call (before session
// 11; keyward's own HTTP/2 now creates no node:http2 stream per call): under load V8 lets the young generation grow to 2 × 64
// MiB, most of it garbage, so RSS right after caching 100k keys was ~400 MiB
// around ~150 MiB of live data. A 2 × 8 MiB young generation took ~100-200
// MiB off RSS under load; CPU per cache hit stayed within the run-to-run
// noise (medians lower in most of four interleaved runs), while V8's own GC
// time per call rose ~0.5-1 µs of ~60-90 (more, smaller scavenges copying
// the same in-flight requests). 2 × 4 MiB cost ~2 µs: not worth its few MiB.
//
// --heap-growing-percent=50 (old generation collected once it has grown by
// half its live size, not up to 4×): node:http2 frees each request's header
// value strings and its stream's native half only in a full GC, and V8 does
// not count that native memory. Once finished streams stopped being promoted
// (a listener-table fix in transport/server.ts at the time), full GCs became rare and that
// memory piled up (RSS 653 MiB after a million hits, 465 before); with it,
// interleaved A/B at 100k cached keys: RSS 274 vs 465 MiB, CPU per hit -10%
// vs the build before both changes. Without the listener fix the same flag
// cost ~15% CPU (ten full GCs per 100k calls, each sweeping promoted streams).
//
// --no-allocation-site-pretenuring: V8 decides per allocation site, at a
// scavenge, to allocate its objects straight in old space when ≥85% of those
// created since the last scavenge survived, and never takes it back. Under
// load that happens to per-request sites at random (a scavenge in the middle
// of a batch of new requests read after a pause, every one still in flight):
// --trace-pretenuring-statistics showed 3 per-request sites tenured in every
// process and a 4th in the slow ones, which then promoted ~3 MB per scavenge
// instead of ~1, ran ~10 full GCs per 100k calls instead of ~3.5 and spent
// 20-60% more CPU per call for the rest of their lives: 2 of 5 processes in
// the A/B (and 9 of 27 in earlier runs), against 0 of 5 (and 0 of 3) without
// pretenuring. Its cost: fewer full GCs, so RSS under load ~30-50 MiB higher.
export const DEFAULT_V8_FLAGS: readonly string[] = ["--max-semi-space-size=8", "--heap-growing-percent=50", "--no-allocation-site-pretenuring"];

/** KEYWARD_V8_FLAGS replaces the defaults ("" runs with V8's own); flags given to node itself always win. */
export function v8FlagsToAdd(env: Record<string, string | undefined>, execArgv: readonly string[]): string[] {
  const raw = env.KEYWARD_V8_FLAGS;
  const wanted = raw === undefined ? DEFAULT_V8_FLAGS : raw.split(/\s+/).filter(Boolean);
  for (const flag of wanted) {
    if (!/^--[a-z0-9][a-z0-9_-]*(=\S+)?$/i.test(flag)) throw new TypeError(`KEYWARD_V8_FLAGS: "${flag}" is not a --flag or --flag=value`);
  }
  // NODE_OPTIONS and the command line may name a flag with _ or -, and a boolean one as --x or --no-x.
  const name = (flag: string) => flag.split("=", 1)[0]!.replace(/_/g, "-").replace(/^--no-/, "--");
  const given = new Set([...execArgv, ...(env.NODE_OPTIONS?.split(/\s+/) ?? [])].filter((a) => a.startsWith("--")).map(name));
  return wanted.filter((flag) => !given.has(name(flag)));
}

/**
 * Re-executes this process with the flags it still lacks; returns when there
 * are none (or the platform cannot re-execute: then V8's defaults apply).
 */
export function applyV8Flags(): void {
  let add: string[];
  try {
    add = v8FlagsToAdd(process.env, process.execArgv);
  } catch (error) {
    process.stderr.write(`keyward: invalid configuration: ${(error as Error).message}\n`);
    process.exit(2);
  }
  if (add.length === 0 || typeof process.execve !== "function") return;
  try {
    process.execve(process.execPath, [process.execPath, ...add, ...process.execArgv, ...process.argv.slice(1)], process.env);
  } catch {
    // Not supported here (Windows): run with V8's defaults.
  }
}
