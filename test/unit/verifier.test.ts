import { describe, expect, it } from "vitest";
import { generateKey } from "../../src/core/key-format.js";
import type { Decision } from "../../src/core/verifier.js";
import { ADMIN, createCore, issueInput } from "../helpers/core.js";

async function decide(result: Decision | Promise<Decision>): Promise<Decision> {
  return result;
}

describe("verifier", () => {
  it("accepts a freshly issued key and serves repeats from the cache, synchronously", async () => {
    const core = createCore();
    const { key, record } = await core.keys.issue(ADMIN, issueInput({ scopes: ["read"] }));
    const first = core.verifier.verify(key, ["read"]);
    // Issue primed the cache: no promise, no query.
    expect(first).not.toBeInstanceOf(Promise);
    expect((first as Decision).code).toBe("valid");
    expect((first as Decision).key?.id).toBe(record.id);
    expect(core.stores.keys.calls.findByHash ?? 0).toBe(0);
  });

  it("loads a cold key once, then answers from the cache", async () => {
    const core = createCore();
    const { key } = await core.keys.issue(ADMIN, issueInput());
    core.cache.clear();
    expect((await decide(core.verifier.verify(key, []))).code).toBe("valid");
    expect((await decide(core.verifier.verify(key, []))).code).toBe("valid");
    expect(core.stores.keys.calls.findByHash).toBe(1);
  });

  it("coalesces concurrent misses for one hash into one query", async () => {
    const core = createCore();
    const { key } = await core.keys.issue(ADMIN, issueInput());
    core.cache.clear();
    const results = await Promise.all(Array.from({ length: 20 }, () => decide(core.verifier.verify(key, []))));
    expect(results.every((d) => d.code === "valid")).toBe(true);
    expect(core.stores.keys.calls.findByHash).toBe(1);
    expect(core.cache.stats().coalesced).toBe(19);
  });

  it("remembers unknown well-formed keys (negative cache) and never looks up malformed ones", async () => {
    const core = createCore();
    const unknown = generateKey().key;
    expect((await decide(core.verifier.verify(unknown, []))).code).toBe("not_found");
    expect((await decide(core.verifier.verify(unknown, []))).code).toBe("not_found");
    expect(core.stores.keys.calls.findByHash).toBe(1);
    const typo = unknown.slice(0, -1) + (unknown.endsWith("a") ? "b" : "a");
    const malformed = core.verifier.verify(typo, []);
    expect(malformed).not.toBeInstanceOf(Promise);
    expect((malformed as Decision).code).toBe("not_found");
    expect((malformed as Decision).key).toBeNull();
    expect(core.stores.keys.calls.findByHash).toBe(1);
    expect(core.cache.stats().negativeSize).toBe(1);
  });

  it("checks in order: revoked, disabled, expired, scopes, rate limit", async () => {
    const core = createCore();
    const expiresAt = new Date(core.clock.now() + 60_000);
    const { key, record } = await core.keys.issue(ADMIN, issueInput({ scopes: ["a"], rateLimit: 1, expiresAt }));
    const all = ["enabled", "expires_at"];
    // Disabled, expired, missing scope and revoked at once: revoked wins.
    await core.keys.update(ADMIN, record.id, { ...record, enabled: false, expiresAt }, all);
    core.clock.advance(120_000);
    await core.keys.revoke(ADMIN, record.id, "leaked");
    expect((await decide(core.verifier.verify(key, ["b"]))).code).toBe("revoked");

    const k2 = await core.keys.issue(ADMIN, issueInput({ scopes: ["a"], rateLimit: 1, expiresAt: new Date(core.clock.now() + 60_000) }));
    await core.keys.update(ADMIN, k2.record.id, { ...k2.record, enabled: false }, ["enabled"]);
    core.clock.advance(120_000);
    expect((await decide(core.verifier.verify(k2.key, ["b"]))).code).toBe("disabled");
    await core.keys.update(ADMIN, k2.record.id, { ...k2.record, enabled: true }, ["enabled"]);
    expect((await decide(core.verifier.verify(k2.key, ["b"]))).code).toBe("expired");
    await core.keys.update(ADMIN, k2.record.id, { ...k2.record, expiresAt: null }, ["expires_at"]);
    const scoped = await decide(core.verifier.verify(k2.key, ["a", "b", "c"]));
    expect(scoped.code).toBe("insufficient_scope");
    expect(scoped.missingScopes).toEqual(["b", "c"]);
    expect((await decide(core.verifier.verify(k2.key, ["a"]))).code).toBe("valid");
    const limited = await decide(core.verifier.verify(k2.key, ["a"]));
    expect(limited.code).toBe("rate_limited");
    expect(limited.rateLimit).toMatchObject({ limit: 1, remaining: 0 });
  });

  it("enforces rate limits per window and resets at reset_at", async () => {
    const core = createCore();
    const { key } = await core.keys.issue(ADMIN, issueInput({ rateLimit: 3, rateLimitWindowSeconds: 10 }));
    const start = core.clock.now();
    const codes = [];
    for (let i = 0; i < 4; i++) codes.push((await decide(core.verifier.verify(key, []))).code);
    expect(codes).toEqual(["valid", "valid", "valid", "rate_limited"]);
    const limited = await decide(core.verifier.verify(key, []));
    expect(limited.rateLimit?.resetAt).toBe(start + 10_000);
    core.clock.advance(10_000);
    const after = await decide(core.verifier.verify(key, []));
    expect(after.code).toBe("valid");
    expect(after.rateLimit).toMatchObject({ limit: 3, remaining: 2 });
  });

  it("defaults the window to an hour", async () => {
    const core = createCore();
    const { record } = await core.keys.issue(ADMIN, issueInput({ rateLimit: 100 }));
    expect(record.rateLimitWindowSeconds).toBe(3600);
  });

  it("counts usage only for valid verifications, in memory", async () => {
    const core = createCore();
    const { key, record } = await core.keys.issue(ADMIN, issueInput({ scopes: ["a"] }));
    await decide(core.verifier.verify(key, ["a"]));
    await decide(core.verifier.verify(key, ["a"]));
    await decide(core.verifier.verify(key, ["nope"]));
    expect(core.usage.pending(record.id)?.count).toBe(2);
    expect(core.stores.keys.calls.addUsage ?? 0).toBe(0);
    await core.usage.flush();
    expect((await core.stores.keys.findById(record.id))?.requestCount).toBe(2);
  });

  it("sees revocation and updates on this instance at once", async () => {
    const core = createCore();
    const { key, record } = await core.keys.issue(ADMIN, issueInput({ scopes: ["a"] }));
    expect((await decide(core.verifier.verify(key, ["a"]))).code).toBe("valid");
    await core.keys.update(ADMIN, record.id, { ...record, scopes: [] }, ["scopes"]);
    expect((await decide(core.verifier.verify(key, ["a"]))).code).toBe("insufficient_scope");
    await core.keys.revoke(ADMIN, record.id, "");
    expect((await decide(core.verifier.verify(key, []))).code).toBe("revoked");
  });

  it("expires keys by the clock without any write", async () => {
    const core = createCore();
    const { key } = await core.keys.issue(ADMIN, issueInput({ expiresAt: new Date(core.clock.now() + 1000) }));
    expect((await decide(core.verifier.verify(key, []))).code).toBe("valid");
    core.clock.advance(1000);
    expect((await decide(core.verifier.verify(key, []))).code).toBe("expired");
  });

  it("keeps hot keys when a flood of unknown keys arrives", async () => {
    const core = createCore({ maxEntries: 100 });
    const { key } = await core.keys.issue(ADMIN, issueInput());
    for (let i = 0; i < 1000; i++) await decide(core.verifier.verify(generateKey().key, []));
    const before = core.stores.keys.calls.findByHash;
    expect((await decide(core.verifier.verify(key, []))).code).toBe("valid");
    expect(core.stores.keys.calls.findByHash).toBe(before);
    expect(core.cache.stats().negativeSize).toBeLessThanOrEqual(25);
  });
});
