import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { describe, expect, it } from "vitest";
import { loadCollector, oldGenerationUsed, startIdleGc } from "../../src/idle-gc.js";

const until = async (done: () => boolean, timeoutMs = 5_000) => {
  const end = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > end) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 5));
  }
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const MiB = 2 ** 20;

/** V8's own gc(), to run real full GCs. */
function rawGc(): () => void {
  setFlagsFromString("--expose-gc");
  try {
    return runInNewContext("gc") as () => void;
  } finally {
    setFlagsFromString("--no-expose-gc");
  }
}

describe("idle GC", () => {
  it("gets a working gc() without exposing it to the process", async () => {
    const collect = loadCollector();
    expect(collect).toBeTypeOf("function");
    expect((globalThis as { gc?: unknown }).gc).toBeUndefined();
    // A weak target lives until the job that made (or read) it ends; after that only a GC clears it.
    const ref = (() => new WeakRef({ payload: new Array(1000).fill(1) }))();
    await sleep(0);
    collect!();
    expect(ref.deref()).toBeUndefined();
  });

  it("collects once the loop stayed idle after the heap grew, once per growth", async () => {
    let busy = 0.5;
    let heap = 100 * MiB;
    let collections = 0;
    const idle = startIdleGc({
      collect: () => {
        collections++;
        heap = 110 * MiB;
      },
      checkMs: 10,
      idleMs: 50,
      minGrowthBytes: 16 * MiB,
      utilization: () => busy,
      heapUsed: () => heap,
      heapSlack: () => 0,
    });
    try {
      // Grown but busy: nothing.
      heap = 150 * MiB;
      await sleep(120);
      expect(collections).toBe(0);
      busy = 0.001;
      await until(() => collections === 1);
      expect(idle.stats().collections).toBe(1);
      // Still idle, nothing grew since: no second collection.
      await sleep(120);
      expect(collections).toBe(1);
      // Grown by less than asked for: none either.
      heap = 120 * MiB;
      await sleep(120);
      expect(collections).toBe(1);
      heap = 130 * MiB;
      await until(() => collections === 2);
    } finally {
      idle.stop();
    }
  });

  it("measures growth from the last full GC, V8's own included", async () => {
    const gc = rawGc();
    let heap = 100 * MiB;
    let collections = 0;
    const idle = startIdleGc({ collect: () => collections++, checkMs: 10, idleMs: 30, minGrowthBytes: 16 * MiB, utilization: () => 0.001, heapUsed: () => heap, heapSlack: () => 0 });
    try {
      heap = 150 * MiB;
      // A full GC that is not keyward's: what stands after it is the new baseline.
      gc();
      await sleep(120);
      expect(collections).toBe(0);
    } finally {
      idle.stop();
    }
  });

  it("gives back what a full GC left resident but unused, once per growth of it", async () => {
    // V8's own full GC at the end of a burst: the old generation is back at its live size (no
    // growth since), but the pages it emptied and the young generation stay resident.
    let slack = 60 * MiB;
    let collections = 0;
    const idle = startIdleGc({
      collect: () => {
        collections++;
        // What a memory-reducing GC cannot give back (pages holding live objects).
        slack = 3 * MiB;
      },
      checkMs: 10,
      idleMs: 30,
      minGrowthBytes: 16 * MiB,
      utilization: () => 0.001,
      heapUsed: () => 100 * MiB,
      heapSlack: () => slack,
    });
    try {
      await until(() => collections === 1);
      // Counted from what stood right after the collection: 3 + 10 MiB is not enough…
      slack = 13 * MiB;
      await sleep(120);
      expect(collections).toBe(1);
      // …3 + 16 MiB is.
      slack = 19 * MiB;
      await until(() => collections === 2);
    } finally {
      idle.stop();
    }
  });

  it("wants the whole idle period quiet: one busy check in it is enough to wait", async () => {
    let checks = 0;
    let collections = 0;
    let heap = 0;
    const idle = startIdleGc({
      collect: () => collections++,
      checkMs: 10,
      idleMs: 100,
      minGrowthBytes: 1,
      // Busy on every 5th check: the average of any 10 checks is above the threshold.
      utilization: () => (++checks % 5 === 0 ? 0.9 : 0.001),
      heapUsed: () => (heap += MiB),
      heapSlack: () => 0,
    });
    try {
      await until(() => checks >= 40);
      expect(collections).toBe(0);
    } finally {
      idle.stop();
    }
  });

  it("frees promoted garbage for real", () => {
    const gc = rawGc() as (options?: { type: "minor" }) => void;
    const collect = loadCollector()!;
    // ~40 MB of objects promoted to the old generation by two scavenges, then dropped.
    let garbage: { name: string; values: number[] }[] | null = [];
    for (let i = 0; i < 300_000; i++) garbage.push({ name: `entry-${i}`, values: [i, i + 1] });
    gc({ type: "minor" });
    gc({ type: "minor" });
    garbage = null;
    const before = oldGenerationUsed();
    collect();
    expect(before - oldGenerationUsed()).toBeGreaterThan(16 * MiB);
  });
});
