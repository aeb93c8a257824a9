import { describe, expect, it } from "vitest";
import { createKeyCache } from "../../src/core/key-cache.js";
import { unavailable } from "../../src/core/errors.js";
import type { KeyRecord } from "../../src/core/model.js";
import { createManualClock } from "../helpers/memory-store.js";

const record = (hash: string): KeyRecord => ({
  id: `key_${hash}`, tenantId: "t", name: "", nameAr: "", prefix: "", hash, scopes: [], rateLimit: 0,
  rateLimitWindowSeconds: 3600, expiresAt: null, createdAt: new Date(0), updatedAt: new Date(0), lastUsedAt: null,
  requestCount: 0, enabled: true, revokedAt: null, revokedReason: "", createdBy: "admin", metadata: {},
});

/** The cache is keyed by latin1 digests and loads by hex hash: these tests use short text for both. */
const text = (hex: string) => Buffer.from(hex, "hex").toString("latin1");

function setup(staleIfErrorMs: number) {
  const clock = createManualClock();
  let failing = false;
  let loads = 0;
  const cache = createKeyCache({
    // The hash as the packed form, so tests can tell entries apart.
    pack: (r) => r.hash,
    load: async (hex) => {
      loads++;
      if (failing) throw unavailable("database unavailable");
      const key = text(hex);
      return key.startsWith("known") ? record(key) : null;
    },
    maxEntries: 10,
    ttlMs: 60_000,
    staleIfErrorMs,
    now: clock.now,
  });
  return { cache, clock, fail: (on: boolean) => (failing = on), loads: () => loads };
}

describe("key cache while storage fails", () => {
  it("answers a stale key from its entry within the stale window, re-trying at most once a second", async () => {
    const { cache, clock, fail, loads } = setup(300_000);
    expect(await cache.load("known-1")).not.toBeNull();
    expect(cache.peek("known-1")?.packed).toBe("known-1");
    clock.advance(61_000);
    expect(cache.peek("known-1")).toBeUndefined();
    fail(true);
    expect((await cache.load("known-1"))?.packed).toBe("known-1");
    expect(cache.stats().staleServed).toBe(1);
    const before = loads();
    // Within the retry pause the stale entry is a hit; no new load.
    expect(cache.peek("known-1")?.packed).toBe("known-1");
    expect(loads()).toBe(before);
    clock.advance(1000);
    expect(cache.peek("known-1")).toBeUndefined();
  });

  it("fails closed for keys it never saw and past the stale window", async () => {
    const { cache, clock, fail } = setup(5_000);
    await cache.load("known-2");
    fail(true);
    await expect(cache.load("known-other")).rejects.toThrow("database unavailable");
    clock.advance(66_000);
    await expect(cache.load("known-2")).rejects.toThrow("database unavailable");
  });

  it("serves nothing stale when the window is zero", async () => {
    const { cache, clock, fail } = setup(0);
    await cache.load("known-3");
    clock.advance(61_000);
    fail(true);
    await expect(cache.load("known-3")).rejects.toThrow("database unavailable");
  });

  it("recovers: a successful load replaces the stale entry", async () => {
    const { cache, clock, fail } = setup(300_000);
    await cache.load("known-4");
    clock.advance(61_000);
    fail(true);
    await cache.load("known-4");
    fail(false);
    clock.advance(1000);
    expect(cache.peek("known-4")).toBeUndefined();
    await cache.load("known-4");
    expect(cache.peek("known-4")?.packed).toBe("known-4");
  });
});

describe("key cache entries", () => {
  it("keep the decision fields as plain values and share equal tenant ids and scope lists", async () => {
    const records = new Map<string, KeyRecord>();
    const cache = createKeyCache({ load: async (hex) => records.get(text(hex)) ?? null, pack: (r) => `packed:${r.id}`, maxEntries: 10, ttlMs: 60_000 });
    const base = record("h1");
    records.set("h1", { ...base, tenantId: ["te", "nant"].join(""), scopes: ["a", "b"], expiresAt: new Date(5_000), lastUsedAt: new Date(7), requestCount: 3 });
    records.set("h2", { ...record("h2"), tenantId: ["ten", "ant"].join(""), scopes: ["a", "b"], revokedAt: new Date(1), enabled: false });
    const one = (await cache.load("h1"))!;
    const two = (await cache.load("h2"))!;
    expect(one).toMatchObject({ id: "key_h1", tenantId: "tenant", scopes: ["a", "b"], expiresAt: 5_000, lastUsedAt: 7, requestCount: 3, revoked: false, enabled: true, packed: "packed:key_h1" });
    expect(two).toMatchObject({ expiresAt: null, lastUsedAt: null, revoked: true, enabled: false });
    expect(two.scopes).toBe(one.scopes);
    expect(Object.isFrozen(one.scopes)).toBe(true);
    // A change to the record the cache was given does not reach the entry.
    records.get("h1")!.scopes.push("c");
    expect(cache.peek("h1")?.scopes).toEqual(["a", "b"]);
  });
});
