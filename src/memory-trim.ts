// Returns the C heap's free memory to the operating system after full GCs.
//
// glibc keeps what is freed inside its arenas resident: node:http2's header
// strings and stream halves (freed by V8's full GCs), the database drivers'
// buffers and the arenas of V8's background threads leave holes that only
// malloc_trim(0) hands back. Measured (npm run bench:memory, 100k keys cached
// through PostgreSQL): ~20 MiB of the ~35 MiB C heap was free but resident.
// Ruby has called malloc_trim after its full GCs since 2.7 for the same reason.
//
// The trim runs a moment after a major GC (weak callbacks free native memory
// after the pause) and at most once per interval: it walks every arena while
// holding its lock.
import { createRequire } from "node:module";
import { onMajorGc } from "./gc-events.js";

export type TrimFunction = () => boolean;

/** glibc's malloc_trim(0) through build/malloc-trim.node; undefined where it was not built (not Linux/glibc, no C compiler). */
export function loadMallocTrim(): TrimFunction | undefined {
  try {
    // src/ and dist/ are both one level below the package root.
    const addon = createRequire(import.meta.url)("../build/malloc-trim.node") as { trim?: unknown };
    return typeof addon.trim === "function" ? (addon.trim as TrimFunction) : undefined;
  } catch {
    return undefined;
  }
}

export interface MemoryTrimmerOptions {
  trim: TrimFunction;
  /** Wait after a major GC before trimming. */
  delayMs?: number;
  /** At most one trim per this many ms. */
  minIntervalMs?: number;
  /** After each trim: how long it took and whether memory was returned. */
  onTrim?: (durationMs: number, released: boolean) => void;
}

export interface MemoryTrimmer {
  stats(): { trims: number; totalMs: number };
  stop(): void;
}

export function startMemoryTrimmer(options: MemoryTrimmerOptions): MemoryTrimmer {
  const delayMs = options.delayMs ?? 500;
  const minIntervalMs = options.minIntervalMs ?? 10_000;
  const stats = { trims: 0, totalMs: 0 };
  let last = -Infinity;
  let timer: NodeJS.Timeout | undefined;
  const run = () => {
    timer = undefined;
    const start = performance.now();
    const released = options.trim();
    last = performance.now();
    stats.trims++;
    stats.totalMs += last - start;
    options.onTrim?.(last - start, released);
  };
  const unsubscribe = onMajorGc(() => {
    if (timer !== undefined) return;
    timer = setTimeout(run, Math.max(delayMs, last + minIntervalMs - performance.now()));
    timer.unref();
  });
  return {
    stats: () => ({ ...stats }),
    stop() {
      unsubscribe();
      clearTimeout(timer);
      timer = undefined;
    },
  };
}
