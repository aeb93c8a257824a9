// Collects the heap once keyward goes idle after a busy spell, so a sidecar
// that served a burst gives the memory back within seconds instead of keeping
// it until the next burst.
//
// V8's memory reducer is meant to do exactly this: once the allocation rate
// drops after a GC it runs memory-reducing GCs ~8 s later. On Node 24 it never
// sees an idle keyward (or any idle Node server) as idle: Node's C++ heap
// (cppgc) allocates nothing at idle, V8 rates an allocation speed of exactly
// zero as the worst mutator utilization ("high alloc"), and only its ~100 s
// watchdog is left (bench/README.md, "Memory probe"). This restores the
// designed behaviour, on by default (KEYWARD_IDLE_GC). A memory-reducing GC
// does not retain dead maps, so at idle it discards the hot path's optimized
// code, which the next burst rebuilds within its first seconds; the lasting
// cost it had (nextTick's tick-object maps) is gone with retain-shapes.ts.
// The collection is V8's memory-reducing one (several passes, compacting, the
// young generation shrunk back, pooled pages released); the malloc trimmer
// (memory-trim.ts) follows it. It is one pause (~0.25 s with 100k cached
// keys), so it waits for an event loop busy less than maxUtilization over
// idleMs, and runs only when there is something to give back: the old
// generation grew by minGrowthBytes since the last full GC, or the heap holds
// minGrowthBytes more committed-but-unused memory than right after the last
// idle collection (V8's own full GCs keep the pages they empty). A trickle of
// traffic gets to neither soon, so it never turns into a collection every idleMs.
import { performance, type EventLoopUtilization } from "node:perf_hooks";
import v8 from "node:v8";
import vm from "node:vm";
import { onMajorGc } from "./gc-events.js";

export type CollectFunction = () => void;

/**
 * V8's gc() with the memory-reducing flavour, or undefined where V8 refuses.
 * --expose-gc is read when a context is created: a fresh context gets gc()
 * without exposing it to keyward's own globals, and the flag is unset again.
 */
export function loadCollector(): CollectFunction | undefined {
  try {
    v8.setFlagsFromString("--expose-gc");
    const gc = vm.runInNewContext("gc") as unknown;
    if (typeof gc !== "function") return undefined;
    return () => (gc as (options: object) => void)({ type: "major", flavor: "last-resort" });
  } catch {
    return undefined;
  } finally {
    v8.setFlagsFromString("--no-expose-gc");
  }
}

/** Bytes used by every space but the young generation's. */
export function oldGenerationUsed(): number {
  let used = 0;
  for (const space of v8.getHeapSpaceStatistics()) {
    if (!space.space_name.startsWith("new_")) used += space.space_used_size;
  }
  return used;
}

/** Heap memory resident but not in use: pages V8 keeps after emptying them, an empty young generation. */
export function heapSlack(): number {
  const heap = v8.getHeapStatistics();
  return Math.max(0, heap.total_physical_size - heap.used_heap_size);
}

export interface IdleGcOptions {
  collect: CollectFunction;
  /** How often idleness is sampled. */
  checkMs?: number;
  /** How long the event loop must stay idle. */
  idleMs?: number;
  /** Idle: busy less than this share of the last idleMs (an idle keyward is at ~0.002; 0.005 is a few dozen Verify calls/s). */
  maxUtilization?: number;
  /** Old-generation growth since the last full GC, or heap slack (see heapSlack) added since the last idle collection, that makes a collection worth it. */
  minGrowthBytes?: number;
  /** Event loop utilization since the previous call (tests). */
  utilization?: () => number;
  /** Old-generation bytes in use (tests). */
  heapUsed?: () => number;
  /** Resident heap bytes not in use (tests). */
  heapSlack?: () => number;
  /** After each collection: how long it took and the old-generation bytes it freed. */
  onCollect?: (durationMs: number, freedBytes: number) => void;
}

export interface IdleGc {
  stats(): { collections: number; totalMs: number };
  stop(): void;
}

export function startIdleGc(options: IdleGcOptions): IdleGc {
  const checkMs = options.checkMs ?? 1000;
  const idleChecks = Math.max(1, Math.ceil((options.idleMs ?? 10_000) / checkMs));
  const maxUtilization = options.maxUtilization ?? 0.005;
  const minGrowth = options.minGrowthBytes ?? 8 * 2 ** 20;
  const heapUsed = options.heapUsed ?? oldGenerationUsed;
  const slack = options.heapSlack ?? heapSlack;
  const utilization = options.utilization ?? eventLoopUtilization();
  const stats = { collections: 0, totalMs: 0 };
  // Old generation after the last full GC, V8's own included: read when the GC
  // is reported, which a serving event loop does within a turn.
  let baseline = heapUsed();
  // Slack right after the last idle collection: what a collection cannot give back.
  let slackBaseline = 0;
  // The busy share of the last idleChecks checks.
  const window: number[] = [];

  const unsubscribe = onMajorGc(() => {
    baseline = heapUsed();
  });

  const timer = setInterval(() => {
    window.push(utilization());
    if (window.length > idleChecks) window.shift();
    if (window.length < idleChecks || window.reduce((sum, u) => sum + u, 0) / idleChecks >= maxUtilization) return;
    const before = heapUsed();
    if (before - baseline < minGrowth && slack() - slackBaseline < minGrowth) return;
    const start = performance.now();
    options.collect();
    const durationMs = performance.now() - start;
    stats.collections++;
    stats.totalMs += durationMs;
    baseline = heapUsed();
    slackBaseline = slack();
    window.length = 0;
    options.onCollect?.(durationMs, before - baseline);
  }, checkMs);
  timer.unref();

  return {
    stats: () => ({ ...stats }),
    stop() {
      clearInterval(timer);
      unsubscribe();
    },
  };
}

/** The event loop's busy share since the previous call. */
function eventLoopUtilization(): () => number {
  let last: EventLoopUtilization = performance.eventLoopUtilization();
  return () => {
    const now = performance.eventLoopUtilization();
    const delta = performance.eventLoopUtilization(now, last);
    last = now;
    return delta.utilization;
  };
}
