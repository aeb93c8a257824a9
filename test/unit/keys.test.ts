import { describe, expect, it } from "vitest";
import type { Principal } from "../../src/core/auth.js";
import { KeywardError } from "../../src/core/errors.js";
import { ADMIN, ADMIN_TOKEN, createCore, issueInput } from "../helpers/core.js";

const kind = async (p: Promise<unknown>) => {
  try {
    await p;
  } catch (e) {
    return e instanceof KeywardError ? `${e.kind}: ${e.message}` : `other: ${String(e)}`;
  }
  return "ok";
};

async function tenantAdmin(core: ReturnType<typeof createCore>, tenantId: string): Promise<{ key: string; principal: Principal }> {
  const { key } = await core.keys.issue(ADMIN, issueInput({ tenantId, scopes: ["keyward:admin"] }));
  return { key, principal: await core.auth.authenticate(`Bearer ${key}`) };
}

describe("authentication", () => {
  it("accepts the admin token and admin-scoped keys, rejects everything else", async () => {
    const core = createCore();
    expect(await core.auth.authenticate(`Bearer ${ADMIN_TOKEN}`)).toEqual(ADMIN);
    expect(await core.auth.authenticate(`bearer   ${ADMIN_TOKEN}  `)).toEqual(ADMIN);
    const { principal } = await tenantAdmin(core, "acme");
    expect(principal).toMatchObject({ kind: "key", tenantId: "acme", isAdmin: true });
    expect(await kind(core.auth.authenticate(undefined))).toMatch(/^unauthenticated: missing credential/);
    expect(await kind(core.auth.authenticate("Basic abc"))).toMatch(/^unauthenticated: missing credential/);
    expect(await kind(core.auth.authenticate(`Bearer ${ADMIN_TOKEN}x`))).toBe("unauthenticated: invalid credential");
    const { key, record } = await core.keys.issue(ADMIN, issueInput());
    await core.keys.revoke(ADMIN, record.id, "");
    expect(await kind(core.auth.authenticate(`Bearer ${key}`))).toBe("unauthenticated: invalid credential");
  });

  it("lets non-admin keys authenticate but not manage", async () => {
    const core = createCore();
    const { key } = await core.keys.issue(ADMIN, issueInput({ scopes: ["read"] }));
    const reader = await core.auth.authenticate(`Bearer ${key}`);
    expect(await kind(core.keys.issue(reader, issueInput()))).toMatch(/^permission_denied/);
    expect(await kind(core.keys.list(reader, { tenantId: "", pageSize: 0, pageToken: "", includeRevoked: false }))).toMatch(
      /^permission_denied/,
    );
  });
});

describe("key management", () => {
  it("issues keys with every field and records who issued them", async () => {
    const core = createCore();
    const expiresAt = new Date(core.clock.now() + 86_400_000);
    const { key, record } = await core.keys.issue(
      ADMIN,
      issueInput({ name: "ci", nameAr: "مفتاح التكامل", scopes: ["a", "b", "a"], rateLimit: 10, expiresAt, metadata: { team: "x" }, prefix: "sk_live" }),
    );
    expect(key).toMatch(/^sk_live_/);
    expect(record).toMatchObject({ tenantId: "acme", name: "ci", nameAr: "مفتاح التكامل", scopes: ["a", "b"], rateLimit: 10, rateLimitWindowSeconds: 3600, createdBy: "admin", enabled: true });
    expect(record.prefix).toBe(key.slice(0, 12));
    expect(record.hash).not.toContain(key);
    expect(JSON.stringify(core.stores.events)).not.toContain(key);
    const { principal } = await tenantAdmin(core, "acme");
    const second = await core.keys.issue(principal, issueInput({ tenantId: "" }));
    expect(second.record.createdBy).toBe(principal.actor);
    expect(second.record.tenantId).toBe("acme");
  });

  it("rejects bad issue input with the field named", async () => {
    const core = createCore();
    const cases: [Partial<Parameters<typeof issueInput>[0]>, RegExp][] = [
      [{ tenantId: "" }, /tenant_id is required/],
      [{ tenantId: "a b" }, /tenant_id may contain only/],
      [{ prefix: "Sk-Live" }, /prefix must be/],
      [{ scopes: ["has space"] }, /scopes entries/],
      [{ scopes: ["a,b"] }, /scopes entries/],
      [{ scopes: Array.from({ length: 65 }, (_, i) => `s${i}`) }, /at most 64/],
      [{ name: "x".repeat(257) }, /name must be at most 256/],
      [{ name: "bad\0" }, /NUL/],
      [{ name: "\ud800" }, /UTF-8/],
      [{ metadata: { "": "v" } }, /metadata keys/],
      [{ metadata: { k: "v".repeat(1025) } }, /metadata\["k"\]/],
      [{ expiresAt: new Date(0) }, /expires_at must be in the future/],
      [{ rateLimitWindowSeconds: 10 ** 9 }, /rate_limit_window_seconds/],
    ];
    for (const [input, message] of cases) {
      const result = await kind(core.keys.issue(ADMIN, issueInput(input)));
      expect(result, JSON.stringify(input).slice(0, 80)).toMatch(/^invalid_argument: /);
      expect(result).toMatch(message);
    }
  });

  it("keeps tenants apart: another tenant's key is not found, not forbidden", async () => {
    const core = createCore();
    const other = await core.keys.issue(ADMIN, issueInput({ tenantId: "globex" }));
    const { principal } = await tenantAdmin(core, "acme");
    expect(await kind(core.keys.get(principal, other.record.id))).toBe(`not_found: key "${other.record.id}" not found`);
    expect(await kind(core.keys.revoke(principal, other.record.id, ""))).toMatch(/^not_found/);
    expect(await kind(core.keys.update(principal, other.record.id, { ...other.record }, ["name"]))).toMatch(/^not_found/);
    expect(await kind(core.keys.list(principal, { tenantId: "globex", pageSize: 0, pageToken: "", includeRevoked: false }))).toMatch(
      /^not_found/,
    );
    expect(await kind(core.keys.issue(principal, issueInput({ tenantId: "globex" })))).toMatch(/^not_found/);
    expect((await core.keys.get(ADMIN, other.record.id)).tenantId).toBe("globex");
  });

  it("revokes softly and idempotently", async () => {
    const core = createCore();
    const { record } = await core.keys.issue(ADMIN, issueInput());
    const first = await core.keys.revoke(ADMIN, record.id, "leaked");
    core.clock.advance(5000);
    const second = await core.keys.revoke(ADMIN, record.id, "again");
    expect(second.revokedAt).toEqual(first.revokedAt);
    expect(second.revokedReason).toBe("leaked");
    expect(core.stores.events.filter((e) => e.action === "key.revoke")).toHaveLength(1);
    expect(await kind(core.keys.update(ADMIN, record.id, { ...record }, ["name"]))).toMatch(/^failed_precondition/);
    expect(await kind(core.keys.revoke(ADMIN, "key_nope", ""))).toBe('not_found: key "key_nope" not found');
    expect(await kind(core.keys.revoke(ADMIN, "", ""))).toBe("invalid_argument: id is required");
  });

  it("updates only the masked fields and rejects unknown paths", async () => {
    const core = createCore();
    const { record } = await core.keys.issue(ADMIN, issueInput({ name: "old", scopes: ["a"] }));
    const input = { ...record, name: "new", scopes: ["b"], enabled: false };
    const updated = await core.keys.update(ADMIN, record.id, input, ["name"]);
    expect(updated).toMatchObject({ name: "new", scopes: ["a"], enabled: true });
    expect(await kind(core.keys.update(ADMIN, record.id, input, ["hash"]))).toMatch(/^invalid_argument: update_mask path "hash"/);
    expect(await kind(core.keys.update(ADMIN, record.id, input, []))).toMatch(/^invalid_argument: update_mask must name/);
  });

  it("pages newest first with opaque tokens bound to the query", async () => {
    const core = createCore();
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) {
      ids.push((await core.keys.issue(ADMIN, issueInput({ name: `k${i}` }))).record.id);
      core.clock.advance(1);
    }
    await core.keys.revoke(ADMIN, ids[3]!, "");
    const seen: string[] = [];
    let pageToken = "";
    do {
      const page = await core.keys.list(ADMIN, { tenantId: "acme", pageSize: 2, pageToken, includeRevoked: false });
      expect(page.records.length).toBeLessThanOrEqual(2);
      seen.push(...page.records.map((r) => r.id));
      pageToken = page.nextPageToken;
    } while (pageToken);
    expect(seen).toEqual(ids.filter((id) => id !== ids[3]).reverse());
    const all = await core.keys.list(ADMIN, { tenantId: "acme", pageSize: 100, pageToken: "", includeRevoked: true });
    expect(all.records).toHaveLength(7);
    expect(all.nextPageToken).toBe("");
    const first = await core.keys.list(ADMIN, { tenantId: "acme", pageSize: 2, pageToken: "", includeRevoked: false });
    expect(await kind(core.keys.list(ADMIN, { tenantId: "acme", pageSize: 2, pageToken: first.nextPageToken, includeRevoked: true }))).toMatch(
      /^invalid_argument: page_token belongs to a different query/,
    );
    for (const bad of ["garbage!", "eyJ4IjoxfQ", "x".repeat(600)]) {
      expect(await kind(core.keys.list(ADMIN, { tenantId: "acme", pageSize: 2, pageToken: bad, includeRevoked: false }))).toMatch(
        /^invalid_argument: page_token/,
      );
    }
    expect(await kind(core.keys.list(ADMIN, { tenantId: "acme", pageSize: -1, pageToken: "", includeRevoked: false }))).toMatch(
      /^invalid_argument: page_size/,
    );
    expect(await kind(core.keys.list(ADMIN, { tenantId: "", pageSize: 1, pageToken: "", includeRevoked: false }))).toMatch(
      /^invalid_argument: tenant_id is required/,
    );
  });
});
