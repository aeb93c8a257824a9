// Storage layer against real databases: every test runs on SQLite and on
// PostgreSQL (skipped with a warning when PostgreSQL is unreachable outside CI).
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { KeywardError } from "../../src/core/errors.js";
import type { AuditInput, KeyRecord, SettingRecord } from "../../src/core/model.js";
import { createDatabase, type Database } from "../../src/storage/database.js";
import { testDatabases, type TestDatabaseHandle } from "../helpers/databases.js";

const factories = await testDatabases();

let seq = 0;
const unique = (label: string) => `${label}_${(++seq).toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
const hex64 = () => Array.from({ length: 64 }, () => "0123456789abcdef"[Math.floor(Math.random() * 16)]).join("");

function makeKey(overrides: Partial<KeyRecord> = {}): KeyRecord {
  const created = overrides.createdAt ?? new Date(Date.parse("2026-01-01T00:00:00.123Z"));
  return {
    id: unique("key"),
    tenantId: "acme",
    name: "test key",
    nameAr: "",
    prefix: "kw_live_ab12",
    hash: hex64(),
    scopes: ["keys:read", "orders:write"],
    rateLimit: 100,
    rateLimitWindowSeconds: 60,
    expiresAt: null,
    createdAt: created,
    updatedAt: created,
    lastUsedAt: null,
    requestCount: 0,
    enabled: true,
    revokedAt: null,
    revokedReason: "",
    createdBy: "admin",
    metadata: { team: "platform" },
    ...overrides,
  };
}

function makeSetting(overrides: Partial<SettingRecord> = {}): SettingRecord {
  return {
    tenantId: "acme",
    key: unique("setting"),
    value: "42",
    valueType: "int",
    description: "answer",
    descriptionAr: "",
    isPublic: false,
    updatedAt: new Date(Date.parse("2026-02-01T10:00:00.456Z")),
    ...overrides,
  };
}

const audit = (action: string, at = new Date(), details: Record<string, unknown> = {}): AuditInput => ({
  actor: "admin",
  action,
  details,
  at,
});

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error("expected the promise to reject");
}

describe.each(factories)("storage on $kind", (factory) => {
  // PostgreSQL unreachable outside CI: skipped with the helper's warning. Under CI
  // testDatabases() throws instead, so CI always runs these for real.
  const it = test.skipIf(!factory.available);
  let handle: TestDatabaseHandle;
  let db: Database;

  beforeAll(async () => {
    if (!factory.available) return;
    handle = await factory.create();
    db = await createDatabase({ url: handle.url });
    await db.migrate();
  });

  afterAll(async () => {
    await db?.close();
    await handle?.drop();
  });

  it("migrate() is idempotent and records each migration once", async () => {
    await db.migrate();
    await db.migrate();
    const rows = await db.orm.em.fork().execute<{ name: string }[]>("select name from keyward_migrations");
    expect(rows.length).toBeGreaterThan(0);
    expect(new Set(rows.map((r) => r.name)).size).toBe(rows.length);
    await db.ping();
  });

  test.runIf(factory.available && factory.kind === "postgresql")("concurrent migrate() from two instances applies migrations once", async () => {
    const fresh = await factory.create();
    const a = await createDatabase({ url: fresh.url, poolMax: 1 });
    const b = await createDatabase({ url: fresh.url, poolMax: 1 });
    try {
      await Promise.all([a.migrate(), b.migrate(), a.migrate()]);
      const rows = await a.orm.em.fork().execute<{ name: string }[]>("select name from keyward_migrations");
      expect(rows.length).toBeGreaterThan(0);
      expect(new Set(rows.map((r) => r.name)).size).toBe(rows.length);
      await b.keys.insert(makeKey(), audit("key.issue"));
    } finally {
      await a.close();
      await b.close();
      await fresh.drop();
    }
  });

  it("inserts and finds keys by hash and by id within the tenant wall", async () => {
    const key = makeKey({
      tenantId: unique("tenant"),
      expiresAt: new Date(Date.parse("2027-03-04T05:06:07.891Z")),
      metadata: { env: "prod", owner: "team-a" },
    });
    await db.keys.insert(key, audit("key.issue", key.createdAt));

    expect(await db.keys.findByHash(key.hash)).toEqual(key);
    expect(await db.keys.findById(key.id)).toEqual(key);
    expect(await db.keys.findById(key.id, key.tenantId)).toEqual(key);
    expect(await db.keys.findById(key.id, "someone-else")).toBeNull();
    expect(await db.keys.findById("missing")).toBeNull();
    expect(await db.keys.findByHash(hex64())).toBeNull();

    const events = await db.audit.list({ tenantId: key.tenantId, limit: 10 });
    expect(events).toEqual([
      {
        id: expect.stringMatching(/^evt_/),
        tenantId: key.tenantId,
        actor: "admin",
        action: "key.issue",
        target: key.id,
        details: {},
        occurredAt: key.createdAt,
      },
    ]);
  });

  it("rejects a duplicate hash with already_exists, a safe message and no audit event", async () => {
    const tenantId = unique("tenant");
    const first = makeKey({ tenantId });
    await db.keys.insert(first, audit("key.issue"));
    const error = await rejection(db.keys.insert(makeKey({ tenantId, hash: first.hash }), audit("key.issue")));
    expect(error).toBeInstanceOf(KeywardError);
    expect((error as KeywardError).kind).toBe("already_exists");
    const serialized = JSON.stringify({ message: (error as Error).message, cause: String((error as Error).cause) });
    expect(serialized).not.toContain(first.hash);
    expect(serialized).not.toMatch(/insert into/i);
    // The failed insert rolled back together with its audit event.
    expect(await db.audit.list({ tenantId, limit: 10 })).toHaveLength(1);
  });

  it("update applies only the patch fields and stamps updated_at", async () => {
    const key = makeKey({ tenantId: unique("tenant"), expiresAt: new Date("2027-01-01T00:00:00.000Z") });
    await db.keys.insert(key, audit("key.issue", key.createdAt));
    const at = new Date(Date.parse("2026-05-05T05:05:05.505Z"));

    expect(await db.keys.update(key.id, "other-tenant", { name: "stolen" }, audit("key.update", at))).toBeNull();
    expect(await db.keys.update("missing", undefined, { name: "x" }, audit("key.update", at))).toBeNull();

    const updated = await db.keys.update(
      key.id,
      key.tenantId,
      { name: "renamed", scopes: ["a"], enabled: false, expiresAt: null, metadata: { k: "v" }, rateLimit: undefined },
      audit("key.update", at, { fields: ["name", "scopes", "enabled", "expiresAt", "metadata"] }),
    );
    const expected = { ...key, name: "renamed", scopes: ["a"], enabled: false, expiresAt: null, metadata: { k: "v" }, updatedAt: at };
    expect(updated).toEqual(expected);
    expect(await db.keys.findById(key.id)).toEqual(expected);

    const globalAdmin = await db.keys.update(key.id, undefined, { rateLimit: 5 }, audit("key.update", at));
    expect(globalAdmin).toEqual({ ...expected, rateLimit: 5 });

    const events = await db.audit.list({ tenantId: key.tenantId, limit: 10 });
    expect(events.map((e) => e.action)).toEqual(["key.update", "key.update", "key.issue"]);
    expect(events.find((e) => e.action === "key.update" && "fields" in e.details)?.details).toEqual({
      fields: ["name", "scopes", "enabled", "expiresAt", "metadata"],
    });
  });

  it("revoke is idempotent and audits only the first revocation", async () => {
    const key = makeKey({ tenantId: unique("tenant") });
    await db.keys.insert(key, audit("key.issue"));
    const at = new Date(Date.parse("2026-06-06T06:06:06.606Z"));

    expect(await db.keys.revoke(key.id, "other-tenant", "nope", audit("key.revoke", at))).toBeNull();
    const revoked = await db.keys.revoke(key.id, key.tenantId, "leaked", audit("key.revoke", at, { reason: "leaked" }));
    expect(revoked).toEqual({ ...key, revokedAt: at, revokedReason: "leaked", updatedAt: at });

    const later = new Date(at.getTime() + 60_000);
    const again = await db.keys.revoke(key.id, undefined, "again", audit("key.revoke", later));
    expect(again).toEqual(revoked);

    // Concurrent revokes of a fresh key: exactly one wins.
    const other = makeKey({ tenantId: key.tenantId });
    await db.keys.insert(other, audit("key.issue"));
    const results = await Promise.all(
      [1, 2, 3].map((n) => db.keys.revoke(other.id, undefined, `r${n}`, audit("key.revoke", at))),
    );
    expect(new Set(results.map((r) => r?.revokedReason)).size).toBe(1);

    const events = await db.audit.list({ tenantId: key.tenantId, limit: 20 });
    expect(events.filter((e) => e.action === "key.revoke" && e.target === key.id)).toHaveLength(1);
    expect(events.filter((e) => e.action === "key.revoke" && e.target === other.id)).toHaveLength(1);
    expect(events.find((e) => e.target === key.id && e.action === "key.revoke")?.details).toEqual({ reason: "leaked" });
  });

  it("lists keys newest first with keyset paging, hiding revoked keys unless asked", async () => {
    const tenantId = unique("tenant");
    const base = Date.parse("2026-03-01T00:00:00.000Z");
    const keys = [
      makeKey({ tenantId, id: "k_a", createdAt: new Date(base + 1) }),
      makeKey({ tenantId, id: "k_b", createdAt: new Date(base + 2) }),
      // Same created_at: the id breaks the tie (descending).
      makeKey({ tenantId, id: "k_c", createdAt: new Date(base + 3) }),
      makeKey({ tenantId, id: "k_d", createdAt: new Date(base + 3) }),
      makeKey({ tenantId, id: "k_e", createdAt: new Date(base + 4) }),
    ];
    for (const key of keys) await db.keys.insert({ ...key, updatedAt: key.createdAt }, audit("key.issue"));
    await db.keys.insert(makeKey({ tenantId: unique("tenant"), id: "k_other_tenant" }), audit("key.issue"));
    await db.keys.revoke("k_b", tenantId, "old", audit("key.revoke"));

    const pageAll = async (includeRevoked: boolean, limit: number) => {
      const ids: string[] = [];
      let after: { createdAt: Date; id: string } | undefined;
      for (;;) {
        const page = await db.keys.list({ tenantId, limit, after, includeRevoked });
        expect(page.length).toBeLessThanOrEqual(limit);
        ids.push(...page.map((k) => k.id));
        const last = page.at(-1);
        if (page.length < limit || !last) return ids;
        after = { createdAt: last.createdAt, id: last.id };
      }
    };
    expect(await pageAll(false, 2)).toEqual(["k_e", "k_d", "k_c", "k_a"]);
    expect(await pageAll(true, 2)).toEqual(["k_e", "k_d", "k_c", "k_b", "k_a"]);
    expect(await pageAll(true, 1)).toEqual(["k_e", "k_d", "k_c", "k_b", "k_a"]);
    expect(await pageAll(true, 100)).toEqual(["k_e", "k_d", "k_c", "k_b", "k_a"]);
    expect(await db.keys.list({ tenantId, limit: 0, includeRevoked: true })).toEqual([]);
    const [first] = await db.keys.list({ tenantId, limit: 1, includeRevoked: false });
    expect(first).toEqual({ ...keys[4], updatedAt: keys[4]!.createdAt });
  });

  it("upserts, gets, lists and deletes settings", async () => {
    const tenantId = unique("tenant");
    const t1 = new Date(Date.parse("2026-04-01T00:00:00.001Z"));
    const a = makeSetting({ tenantId, key: "a.limit", isPublic: true, updatedAt: t1 });
    const b = makeSetting({ tenantId, key: "b.secret", value: "s3cr3t", valueType: "string" });
    const c = makeSetting({ tenantId, key: "c.flag", value: "true", valueType: "bool", isPublic: true });
    const d = makeSetting({ tenantId, key: "d.json", value: '{"x":1}', valueType: "json" });
    for (const s of [c, a, d, b]) expect(await db.settings.upsert(s, audit("setting.set"))).toEqual(s);
    await db.settings.upsert(makeSetting({ tenantId: unique("tenant"), key: "a.limit" }), audit("setting.set"));

    expect(await db.settings.get(tenantId, "a.limit")).toEqual(a);
    expect(await db.settings.get(tenantId, "missing")).toBeNull();
    expect(await db.settings.get("other-tenant", "a.limit")).toBeNull();

    const t2 = new Date(t1.getTime() + 1000);
    const a2 = { ...a, value: "7", description: "changed", updatedAt: t2 };
    expect(await db.settings.upsert(a2, audit("setting.set", t2))).toEqual(a2);
    expect(await db.settings.get(tenantId, "a.limit")).toEqual(a2);

    const keysOf = (rows: SettingRecord[]) => rows.map((s) => s.key);
    expect(keysOf(await db.settings.list({ tenantId, limit: 10, publicOnly: false }))).toEqual([
      "a.limit",
      "b.secret",
      "c.flag",
      "d.json",
    ]);
    expect(keysOf(await db.settings.list({ tenantId, limit: 2, publicOnly: false }))).toEqual(["a.limit", "b.secret"]);
    expect(keysOf(await db.settings.list({ tenantId, limit: 2, afterKey: "b.secret", publicOnly: false }))).toEqual([
      "c.flag",
      "d.json",
    ]);
    expect(keysOf(await db.settings.list({ tenantId, limit: 10, publicOnly: true }))).toEqual(["a.limit", "c.flag"]);
    expect(keysOf(await db.settings.list({ tenantId, limit: 10, afterKey: "a.limit", publicOnly: true }))).toEqual([
      "c.flag",
    ]);

    expect(await db.settings.delete(tenantId, "b.secret", audit("setting.delete"))).toBe(true);
    expect(await db.settings.delete(tenantId, "b.secret", audit("setting.delete"))).toBe(false);
    expect(await db.settings.get(tenantId, "b.secret")).toBeNull();

    const events = await db.audit.list({ tenantId, limit: 20 });
    expect(events.filter((e) => e.action === "setting.set")).toHaveLength(5);
    expect(events.filter((e) => e.action === "setting.delete").map((e) => e.target)).toEqual(["b.secret"]);
  });

  it("addUsage writes large batches completely (in chunks of 500 keys)", async () => {
    const tenantId = unique("tenant");
    const keys = Array.from({ length: 1_100 }, () => makeKey({ tenantId }));
    for (const key of keys) await db.keys.insert(key, audit("key.issue"));
    const at = new Date(Date.parse("2026-07-02T00:00:00.000Z"));
    await db.keys.addUsage(keys.map((k, i) => ({ id: k.id, count: i + 1, lastUsedAt: new Date(at.getTime() + i) })));
    for (const i of [0, 499, 500, 999, 1_000, 1_099]) {
      expect(await db.keys.findById(keys[i]!.id)).toMatchObject({ requestCount: i + 1, lastUsedAt: new Date(at.getTime() + i) });
    }
  });

  it("addUsage adds counts and keeps the latest last_used_at", async () => {
    const tenantId = unique("tenant");
    const k1 = makeKey({ tenantId });
    const k2 = makeKey({ tenantId });
    await db.keys.insert(k1, audit("key.issue"));
    await db.keys.insert(k2, audit("key.issue"));
    const t = (ms: number) => new Date(Date.parse("2026-07-01T00:00:00.000Z") + ms);

    await db.keys.addUsage([]);
    await db.keys.addUsage([
      { id: k1.id, count: 3, lastUsedAt: t(500) },
      { id: k2.id, count: 1, lastUsedAt: t(100) },
      { id: k1.id, count: 2, lastUsedAt: t(250) },
      { id: "missing", count: 9, lastUsedAt: t(900) },
    ]);
    // An older flush arriving late must not move last_used_at backwards.
    await db.keys.addUsage([{ id: k1.id, count: 10, lastUsedAt: t(1) }]);
    await Promise.all([
      db.keys.addUsage([{ id: k2.id, count: 4, lastUsedAt: t(7_001) }]),
      db.keys.addUsage([{ id: k2.id, count: 5, lastUsedAt: t(7_002) }]),
    ]);

    expect(await db.keys.findById(k1.id)).toMatchObject({ requestCount: 15, lastUsedAt: t(500) });
    expect(await db.keys.findById(k2.id)).toMatchObject({ requestCount: 10, lastUsedAt: t(7_002) });

    // Counters are bigint columns.
    const big = 2 ** 40;
    await db.keys.addUsage([{ id: k1.id, count: big, lastUsedAt: t(600) }]);
    expect((await db.keys.findById(k1.id))?.requestCount).toBe(big + 15);
    // Usage is not a management action: no audit events.
    expect((await db.audit.list({ tenantId, limit: 10 })).map((e) => e.action)).toEqual(["key.issue", "key.issue"]);
  });

  it("round-trips Arabic text and millisecond timestamps", async () => {
    const tenantId = unique("مستأجر");
    const at = new Date(Date.parse("2026-08-09T10:11:12.987Z"));
    const key = makeKey({
      tenantId,
      name: "Production key",
      nameAr: "مفتاح الإنتاج 🔑",
      createdAt: at,
      updatedAt: at,
      revokedReason: "",
      metadata: { "الفريق": "المنصة", note: "naïve café" },
    });
    await db.keys.insert(key, audit("key.issue", at, { nameAr: "مفتاح الإنتاج" }));
    expect(await db.keys.findByHash(key.hash)).toEqual(key);

    const revoked = await db.keys.revoke(key.id, tenantId, "تم تسريب المفتاح", audit("key.revoke", at));
    expect(revoked?.revokedReason).toBe("تم تسريب المفتاح");

    const setting = makeSetting({
      tenantId,
      key: "رسالة.ترحيب",
      value: "أهلاً وسهلاً",
      valueType: "string",
      description: "welcome",
      descriptionAr: "رسالة الترحيب للمستخدمين",
    });
    await db.settings.upsert(setting, audit("setting.set"));
    expect(await db.settings.get(tenantId, "رسالة.ترحيب")).toEqual(setting);

    const events = await db.audit.list({ tenantId, limit: 10 });
    expect(events.find((e) => e.action === "key.issue")?.details).toEqual({ nameAr: "مفتاح الإنتاج" });
    expect(events.find((e) => e.action === "key.issue")?.occurredAt).toEqual(at);
  });

  it("lists audit events newest first with keyset paging", async () => {
    const tenantId = unique("tenant");
    const base = Date.parse("2026-09-01T00:00:00.000Z");
    const times = [base + 5, base + 1, base + 3, base + 3, base + 2];
    for (const [i, ms] of times.entries()) {
      await db.settings.upsert(makeSetting({ tenantId, key: `s${i}` }), audit("setting.set", new Date(ms)));
    }
    const all = await db.audit.list({ tenantId, limit: 100 });
    expect(all.map((e) => e.occurredAt.getTime())).toEqual([base + 5, base + 3, base + 3, base + 2, base + 1]);
    const tied = all.slice(1, 3);
    expect(tied[0]!.id > tied[1]!.id).toBe(true);
    expect(all.every((e) => e.tenantId === tenantId && e.actor === "admin")).toBe(true);

    const paged: string[] = [];
    let after: { occurredAt: Date; id: string } | undefined;
    for (;;) {
      const page = await db.audit.list({ tenantId, limit: 2, after });
      paged.push(...page.map((e) => e.id));
      const last = page.at(-1);
      if (page.length < 2 || !last) break;
      after = { occurredAt: last.occurredAt, id: last.id };
    }
    expect(paged).toEqual(all.map((e) => e.id));
  });

  it("reports every SQL statement to debugQueries, without values", async () => {
    const statements: string[] = [];
    const observed = await createDatabase({ url: handle.url, debugQueries: (sql) => statements.push(sql) });
    try {
      // Opening may run setup statements (SQLite: journal mode); those are reported too.
      if (factory.kind === "sqlite") expect(statements).toEqual(["pragma journal_mode = wal"]);
      statements.length = 0;
      await observed.ping();
      expect(statements).toEqual(["select 1"]);

      const key = makeKey({ tenantId: unique("tenant") });
      statements.length = 0;
      await observed.keys.insert(key, audit("key.issue"));
      // PostgreSQL also announces the change to other instances, inside the transaction.
      const notify = factory.kind === "postgresql" ? [/^select pg_notify\(/i] : [];
      const expected = [/^begin/i, /^insert into .api_keys./i, /^insert into .audit_events./i, ...notify, /^commit/i];
      expect(statements).toHaveLength(expected.length);
      expected.forEach((pattern, i) => expect(statements[i]).toMatch(pattern));

      statements.length = 0;
      expect(await observed.keys.findByHash(key.hash)).toEqual(key);
      expect(statements).toHaveLength(1);
      expect(statements[0]).toMatch(/^select .* from .api_keys./i);

      statements.length = 0;
      await observed.keys.addUsage([
        { id: key.id, count: 1, lastUsedAt: new Date() },
        { id: "other", count: 1, lastUsedAt: new Date() },
      ]);
      // Both databases batch usage into one UPDATE ... FROM (VALUES ...) per 500 keys.
      expect(statements).toHaveLength(3);
      expect(statements.filter((s) => /^update api_keys/i.test(s))).toHaveLength(1);

      statements.length = 0;
      await observed.migrate();
      expect(statements.length).toBeGreaterThan(0);

      expect(statements.join("\n")).not.toContain(key.hash);
    } finally {
      await observed.close();
    }
  });
});

describe("createDatabase", () => {
  test("rejects unsupported URLs naming KEYWARD_DATABASE_URL, never echoing a password", async () => {
    for (const url of ["mysql://root:hunter2@db/keyward", "hunter2", "", "postgres://root:hunter2@db"]) {
      const error = await rejection(createDatabase({ url }));
      expect(error).toBeInstanceOf(Error);
      expect((error as Error).message).toContain("KEYWARD_DATABASE_URL");
      expect((error as Error).message).toContain("sqlite:");
      expect((error as Error).message).not.toContain("hunter2");
    }
  });

  test("accepts sqlite::memory: and creates missing parent directories for sqlite files", async () => {
    const memory = await createDatabase({ url: "sqlite::memory:" });
    await memory.migrate();
    await memory.keys.insert(makeKey(), audit("key.issue"));
    await memory.close();

    const { mkdtemp, rm, stat } = await import("node:fs/promises");
    const { tmpdir } = await import("node:os");
    const { join } = await import("node:path");
    const dir = await mkdtemp(join(tmpdir(), "keyward-test-"));
    try {
      const db = await createDatabase({ url: `sqlite:${join(dir, "nested", "deeper", "k.db")}` });
      await db.migrate();
      await db.close();
      expect((await stat(join(dir, "nested", "deeper", "k.db"))).isFile()).toBe(true);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
