// The change feed's pure parts: payload format under NOTIFY's size limit,
// reconnect backoff, and what each event does to the cache.
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../src/config.js";
import { createCacheSync } from "../../src/core/cache-sync.js";
import { createKeyCache } from "../../src/core/key-cache.js";
import { digestOfHex } from "../../src/core/key-format.js";
import type { KeyRecord } from "../../src/core/model.js";
import { decodeChange, encodeKeyChanges, MAX_PAYLOAD_BYTES, reconnectDelay } from "../../src/storage/change-feed.js";

const hash = (i: number) => i.toString(16).padStart(64, "0");

describe("change payloads", () => {
  it("round-trip key hashes, each payload under NOTIFY's 8000-byte limit", () => {
    expect(encodeKeyChanges([hash(1)])).toEqual([`k:${hash(1)}`]);
    expect(encodeKeyChanges([])).toEqual([]);
    const many = Array.from({ length: 500 }, (_, i) => hash(i));
    const payloads = encodeKeyChanges(many);
    expect(payloads.length).toBeGreaterThan(1);
    for (const p of payloads) expect(Buffer.byteLength(p)).toBeLessThanOrEqual(MAX_PAYLOAD_BYTES);
    expect(payloads.flatMap((p) => (decodeChange(p) as { hashes: string[] }).hashes)).toEqual(many);
  });

  it("recognises a listener's self-check ping, which changes nothing", () => {
    expect(decodeChange("p:keyward-changes/42/abc")).toEqual({ kind: "ping", from: "keyward-changes/42/abc" });
  });

  it("reports anything else as an unknown change (the listener then clears everything)", () => {
    for (const payload of [undefined, "", "s:acme", "k:", `k:${hash(1)},NOT-HEX`, `k:${hash(1)};drop`]) {
      expect(decodeChange(payload).kind).toBe("unknown");
    }
  });
});

describe("reconnect backoff", () => {
  it("doubles from the initial delay, is capped, and jitters within [ceiling/2, ceiling]", () => {
    const low = () => 0;
    const high = () => 1;
    expect([0, 1, 2, 3].map((n) => reconnectDelay(n, 100, 10_000, high))).toEqual([100, 200, 400, 800]);
    expect(reconnectDelay(0, 100, 10_000, low)).toBe(50);
    expect(reconnectDelay(20, 100, 10_000, high)).toBe(10_000);
    expect(reconnectDelay(1_000, 100, 10_000, low)).toBe(5_000);
  });
});

describe("cache sync", () => {
  const record = (h: string): KeyRecord => ({
    id: `key_${h.slice(-4)}`, tenantId: "t", name: "", nameAr: "", prefix: "", hash: h, scopes: [], rateLimit: 0,
    rateLimitWindowSeconds: 3600, expiresAt: null, createdAt: new Date(0), updatedAt: new Date(0), lastUsedAt: null,
    requestCount: 0, enabled: true, revokedAt: null, revokedReason: "", createdBy: "admin", metadata: {},
  });

  function setup() {
    const cache = createKeyCache({ load: async () => null, pack: (r) => r.hash, maxEntries: 100, ttlMs: 60_000 });
    const cleared: unknown[] = [];
    const sync = createCacheSync({ cache, onClear: (info) => cleared.push(info) });
    return { cache, sync, cleared };
  }

  it("evicts exactly the named hashes, positive and negative", async () => {
    const { cache, sync } = setup();
    cache.set(record(hash(1)));
    cache.set(record(hash(2)));
    await cache.load(digestOfHex(hash(3))); // remembered as unknown
    expect(cache.peek(digestOfHex(hash(3)))).toBeNull();
    sync.keysChanged([hash(1), hash(3)]);
    expect(cache.peek(digestOfHex(hash(1)))).toBeUndefined();
    expect(cache.peek(digestOfHex(hash(3)))).toBeUndefined();
    expect(cache.peek(digestOfHex(hash(2)))?.packed).toBe(hash(2));
    expect(sync.stats()).toEqual({ evictions: 2, clears: 0 });
  });

  it("clears after a gap and says so; the first connection with an empty cache is no gap", () => {
    const { cache, sync, cleared } = setup();
    sync.resumed({ downMs: 40, initial: true });
    expect(cleared).toEqual([]);
    cache.set(record(hash(1)));
    sync.resumed({ downMs: 1234, initial: false });
    expect(cache.peek(digestOfHex(hash(1)))).toBeUndefined();
    expect(cleared).toEqual([{ reason: "gap", downMs: 1234, entries: 1 }]);
    // Serving before the first connection (database down at start) is a gap too.
    cache.set(record(hash(2)));
    sync.resumed({ downMs: 5000, initial: true });
    expect(cache.peek(digestOfHex(hash(2)))).toBeUndefined();
    sync.unknownChange("unrecognised payload");
    expect(sync.stats()).toEqual({ evictions: 0, clears: 3 });
  });
});

describe("change feed configuration", () => {
  const pg = "postgres://keyward:secret@db.internal:5432/keyward";

  it("defaults to auto with a 10 s backoff cap and a 5 s heartbeat", () => {
    expect(loadConfig({ KEYWARD_DATABASE_URL: pg }).changeFeed).toEqual({
      mode: "auto",
      url: undefined,
      reconnectMaxSeconds: 10,
      heartbeatSeconds: 5,
    });
    const direct = "postgres://keyward:secret@db-direct.internal:5432/keyward";
    expect(loadConfig({ KEYWARD_DATABASE_URL: pg, KEYWARD_CHANGE_FEED: "OFF", KEYWARD_CHANGE_FEED_URL: direct }).changeFeed)
      .toMatchObject({ mode: "off", url: direct });
  });

  it.each([
    [{ KEYWARD_DATABASE_URL: pg, KEYWARD_CHANGE_FEED: "sometimes" }, "KEYWARD_CHANGE_FEED", /expected auto, on or off/],
    [{ KEYWARD_CHANGE_FEED: "on" }, "KEYWARD_CHANGE_FEED", /needs a PostgreSQL/],
    [{ KEYWARD_DATABASE_URL: pg, KEYWARD_CHANGE_FEED_URL: "sqlite:x.db" }, "KEYWARD_CHANGE_FEED_URL", /postgres/],
    [{ KEYWARD_DATABASE_URL: pg, KEYWARD_CHANGE_FEED_URL: "mysql://a:hunter2@b/c" }, "KEYWARD_CHANGE_FEED_URL", /unsupported scheme/],
    [{ KEYWARD_CHANGE_FEED_URL: pg }, "KEYWARD_CHANGE_FEED_URL", /only applies when KEYWARD_DATABASE_URL is PostgreSQL/],
    [{ KEYWARD_DATABASE_URL: pg, KEYWARD_CHANGE_FEED_RECONNECT_MAX_SECONDS: "0" }, "KEYWARD_CHANGE_FEED_RECONNECT_MAX_SECONDS", /between 1 and 600/],
    [{ KEYWARD_DATABASE_URL: pg, KEYWARD_CHANGE_FEED_HEARTBEAT_SECONDS: "soon" }, "KEYWARD_CHANGE_FEED_HEARTBEAT_SECONDS", /whole number/],
  ])("rejects %j naming the variable", (env, variable, message) => {
    let error: unknown;
    try {
      loadConfig(env);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).variable).toBe(variable);
    expect((error as Error).message).toMatch(message);
    expect((error as Error).message).not.toContain("hunter2");
  });
});
