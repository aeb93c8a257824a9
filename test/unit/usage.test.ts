import { describe, expect, it } from "vitest";
import { createUsageRecorder } from "../../src/core/usage.js";
import type { UsageDelta } from "../../src/core/model.js";

function fakeStore() {
  const batches: UsageDelta[][] = [];
  let failures = 0;
  return {
    batches,
    failTimes(n: number) {
      failures = n;
    },
    async addUsage(deltas: UsageDelta[]) {
      if (failures > 0) {
        failures--;
        throw new Error("database down");
      }
      batches.push(deltas);
    },
  };
}

describe("usage recorder", () => {
  it("batches counts per key and writes nothing until flushed", async () => {
    const store = fakeStore();
    const usage = createUsageRecorder({ store });
    usage.record("a", 1000);
    usage.record("a", 3000);
    usage.record("a", 2000);
    usage.record("b", 500);
    expect(store.batches).toHaveLength(0);
    expect(usage.pending("a")).toEqual({ count: 3, lastUsedAt: 3000 });
    await usage.flush();
    expect(store.batches).toHaveLength(1);
    expect(store.batches[0]).toEqual([
      { id: "a", count: 3, lastUsedAt: new Date(3000) },
      { id: "b", count: 1, lastUsedAt: new Date(500) },
    ]);
    expect(usage.pending("a")).toBeUndefined();
    await usage.flush();
    expect(store.batches).toHaveLength(1);
  });

  it("keeps counts across failed flushes and writes them exactly once later", async () => {
    const store = fakeStore();
    const errors: unknown[] = [];
    const usage = createUsageRecorder({ store, onFlushError: (e) => errors.push(e) });
    usage.record("a", 1);
    store.failTimes(2);
    await expect(usage.flush()).rejects.toThrow("database down");
    usage.record("a", 2);
    await expect(usage.flush()).rejects.toThrow("database down");
    usage.record("a", 3);
    expect(usage.pending("a")).toEqual({ count: 3, lastUsedAt: 3 });
    await usage.flush();
    expect(store.batches).toEqual([[{ id: "a", count: 3, lastUsedAt: new Date(3) }]]);
    expect(errors).toHaveLength(2);
  });

  it("bounds memory while flushes fail and reports what it drops", async () => {
    const store = fakeStore();
    let dropped = 0;
    const usage = createUsageRecorder({ store, maxPendingKeys: 2, onDrop: (n) => (dropped += n) });
    usage.record("a", 1);
    usage.record("b", 1);
    usage.record("c", 1);
    usage.record("a", 2);
    expect(usage.pendingKeys()).toBe(2);
    expect(dropped).toBe(1);
  });

  it("serialises concurrent flushes", async () => {
    const store = fakeStore();
    const usage = createUsageRecorder({ store });
    usage.record("a", 1);
    const p1 = usage.flush();
    usage.record("a", 2);
    const p2 = usage.flush();
    await Promise.all([p1, p2]);
    // Both records are written once in all, never twice.
    expect(store.batches.flat().reduce((n, d) => n + d.count, 0)).toBe(2);
    expect(usage.pendingKeys()).toBe(0);
  });
});
