// Every KeyService and SettingsService RPC through a real server on port 0,
// with a real grpc-js client and a Connect (HTTP/1.1 JSON) client, on SQLite
// and on PostgreSQL.
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { Client } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KeyService, VerifyCode, type ApiKey } from "../../src/gen/keyward/v1/keys_pb.js";
import { SettingsService, SettingType } from "../../src/gen/keyward/v1/settings_pb.js";
import { Code, connectClients, grpcJsClients, rpcError, type ClientFactory } from "../helpers/clients.js";
import { testDatabases, type TestDatabaseHandle } from "../helpers/databases.js";
import { adminHeaders, bearer, startKeyward, type RunningKeyward } from "../helpers/server.js";

const databases = await testDatabases();
const clientKinds: (() => ClientFactory)[] = [grpcJsClients, () => connectClients("connect-json")];

describe.each(databases)("keyward on $kind", (database) => {
  let handle: TestDatabaseHandle;
  let kw: RunningKeyward;

  beforeAll(async () => {
    if (!database.available) return;
    handle = await database.create();
    kw = await startKeyward({ databaseUrl: handle.url });
  });
  afterAll(async () => {
    await kw?.stop();
    await handle?.drop();
  });

  describe.each(clientKinds.map((make) => ({ make, kind: make().kind })))("through $kind", ({ make }) => {
    let clients: ClientFactory;
    let keys: Client<typeof KeyService>;
    let settings: Client<typeof SettingsService>;
    // Each client kind works in its own tenants so the suites do not see each other's keys.
    const t = (name: string) => `${name}-${clients.kind}`;

    beforeAll(() => {
      if (!database.available) return;
      clients = make();
      keys = clients.client(KeyService, kw.baseUrl);
      settings = clients.client(SettingsService, kw.baseUrl);
    });
    afterAll(() => clients?.close());

    const issue = (tenantId: string, extra: Record<string, unknown> = {}) =>
      keys.issue({ tenantId, name: "test", ...extra }, { headers: adminHeaders });

    it.runIf(database.available)("issues a key once and verifies it", async () => {
      const expiresAt = timestampFromMs(Date.now() + 86_400_000);
      const issued = await issue(t("acme"), {
        name: "billing worker",
        nameAr: "عامل الفوترة",
        scopes: ["invoices:read", "invoices:write"],
        rateLimit: 100,
        expiresAt,
        metadata: { team: "billing", "ملاحظة": "قيمة" },
        prefix: "sk_live",
      });
      expect(issued.key).toMatch(/^sk_live_[0-9A-Za-z]{38}$/);
      const apiKey = issued.apiKey as ApiKey;
      expect(apiKey).toMatchObject({
        tenantId: t("acme"),
        name: "billing worker",
        nameAr: "عامل الفوترة",
        scopes: ["invoices:read", "invoices:write"],
        rateLimit: 100,
        rateLimitWindowSeconds: 3600,
        enabled: true,
        createdBy: "admin",
        metadata: { team: "billing", "ملاحظة": "قيمة" },
        requestCount: 0n,
      });
      expect(apiKey.prefix).toBe(issued.key.slice(0, 12));
      expect(apiKey.expiresAt?.seconds).toBe(expiresAt.seconds);
      expect(apiKey.id).toMatch(/^key_/);

      const verified = await keys.verify({ key: issued.key, requiredScopes: ["invoices:read"] });
      expect(verified.valid).toBe(true);
      expect(verified.code).toBe(VerifyCode.VALID);
      expect(verified.apiKey?.id).toBe(apiKey.id);
      expect(verified.apiKey?.nameAr).toBe("عامل الفوترة");
      expect(verified.rateLimit?.limit).toBe(100);
      expect(verified.rateLimit?.remaining).toBe(99);

      // The secret is never shown again.
      const got = await keys.getKey({ id: apiKey.id }, { headers: adminHeaders });
      expect(JSON.stringify(got, (_k, v) => (typeof v === "bigint" ? String(v) : v))).not.toContain(issued.key.slice(8));
      expect(got.apiKey?.requestCount).toBe(1n);
    });

    it.runIf(database.available)("answers every denial as a normal response with its code", async () => {
      const unknown = await keys.verify({ key: "kw_" + "A".repeat(38) });
      expect(unknown).toMatchObject({ valid: false, code: VerifyCode.NOT_FOUND });
      expect(unknown.apiKey).toBeUndefined();
      const random = await keys.verify({ key: "not a key at all" });
      expect(random.code).toBe(VerifyCode.NOT_FOUND);

      const scoped = await issue(t("acme"), { scopes: ["a"] });
      const insufficient = await keys.verify({ key: scoped.key, requiredScopes: ["a", "b"] });
      expect(insufficient).toMatchObject({ valid: false, code: VerifyCode.INSUFFICIENT_SCOPE });
      expect(insufficient.apiKey?.id).toBe(scoped.apiKey?.id);

      const disabled = await issue(t("acme"));
      await keys.updateKey(
        { id: disabled.apiKey!.id, enabled: false, updateMask: { paths: ["enabled"] } },
        { headers: adminHeaders },
      );
      expect((await keys.verify({ key: disabled.key })).code).toBe(VerifyCode.DISABLED);

      const expired = await issue(t("acme"));
      await keys.updateKey(
        { id: expired.apiKey!.id, expiresAt: timestampFromMs(Date.now() - 1000), updateMask: { paths: ["expires_at"] } },
        { headers: adminHeaders },
      );
      expect((await keys.verify({ key: expired.key })).code).toBe(VerifyCode.EXPIRED);

      const revoked = await issue(t("acme"));
      const r1 = await keys.revoke({ id: revoked.apiKey!.id, reason: "leaked in CI log" }, { headers: adminHeaders });
      const r2 = await keys.revoke({ id: revoked.apiKey!.id, reason: "again" }, { headers: adminHeaders });
      expect(r1.apiKey?.revokedReason).toBe("leaked in CI log");
      expect(r2.apiKey?.revokedAt).toEqual(r1.apiKey?.revokedAt);
      expect((await keys.verify({ key: revoked.key })).code).toBe(VerifyCode.REVOKED);

      const limited = await issue(t("acme"), { rateLimit: 2, rateLimitWindowSeconds: 60 });
      const before = Date.now();
      expect((await keys.verify({ key: limited.key })).valid).toBe(true);
      expect((await keys.verify({ key: limited.key })).valid).toBe(true);
      const denied = await keys.verify({ key: limited.key });
      expect(denied).toMatchObject({ valid: false, code: VerifyCode.RATE_LIMITED });
      expect(denied.rateLimit).toMatchObject({ limit: 2, remaining: 0 });
      const resetMs = Number(denied.rateLimit!.resetAt!.seconds) * 1000;
      expect(resetMs).toBeGreaterThan(before + 55_000);
      expect(resetMs).toBeLessThan(Date.now() + 61_000);
    });

    it.runIf(database.available)("rejects bad Verify input with INVALID_ARGUMENT", async () => {
      const empty = await rpcError(keys.verify({ key: "" }));
      expect(empty.code).toBe(Code.InvalidArgument);
      expect(empty.rawMessage).toBe("key is required");
      const huge = await rpcError(keys.verify({ key: "kw_" + "x".repeat(10_000) }));
      expect(huge.code).toBe(Code.InvalidArgument);
      expect(huge.rawMessage).toMatch(/key must be at most \d+ characters/);
      expect(huge.rawMessage).not.toContain("xxxx");
      const scopes = await rpcError(keys.verify({ key: "kw_x", requiredScopes: Array.from({ length: 100 }, (_, i) => `s${i}`) }));
      expect(scopes.code).toBe(Code.InvalidArgument);
    });

    it.runIf(database.available)("authenticates every management RPC", async () => {
      const calls = [
        (h: object) => keys.issue({ tenantId: t("acme") }, h),
        (h: object) => keys.revoke({ id: "key_x" }, h),
        (h: object) => keys.getKey({ id: "key_x" }, h),
        (h: object) => keys.listKeys({ tenantId: t("acme") }, h),
        (h: object) => keys.updateKey({ id: "key_x", updateMask: { paths: ["name"] } }, h),
        (h: object) => settings.setSetting({ setting: { tenantId: t("acme"), key: "k", value: "v", valueType: SettingType.STRING } }, h),
        (h: object) => settings.getSetting({ tenantId: t("acme"), key: "k" }, h),
        (h: object) => settings.listSettings({ tenantId: t("acme") }, h),
        (h: object) => settings.deleteSetting({ tenantId: t("acme"), key: "k" }, h),
      ];
      const reader = await issue(t("acme"), { scopes: ["read"] });
      for (const [i, call] of calls.entries()) {
        const missing = await rpcError(call({}));
        expect(missing.code, `call ${i} without credential`).toBe(Code.Unauthenticated);
        const wrong = await rpcError(call({ headers: { authorization: "Bearer kw_" + "B".repeat(38) } }));
        expect(wrong.code, `call ${i} with a wrong credential`).toBe(Code.Unauthenticated);
        expect(wrong.rawMessage).toBe("invalid credential");
        // Reads of settings are open to any key of the tenant; the rest need the admin scope.
        if (i === 6 || i === 7) continue;
        const forbidden = await rpcError(call({ headers: bearer(reader.key) }));
        expect(forbidden.code, `call ${i} with a non-admin key`).toBe(Code.PermissionDenied);
      }
    });

    it.runIf(database.available)("keeps tenants apart on every management RPC", async () => {
      const tenantAdmin = await issue(t("acme"), { scopes: ["keyward:admin"] });
      const as = { headers: bearer(tenantAdmin.key) };
      const foreign = await issue(t("globex"));
      await settings.setSetting(
        { setting: { tenantId: t("globex"), key: "secret.flag", value: "true", valueType: SettingType.BOOL, isPublic: true } },
        { headers: adminHeaders },
      );
      const id = foreign.apiKey!.id;
      const attempts: [string, () => Promise<unknown>][] = [
        ["Issue", () => keys.issue({ tenantId: t("globex"), name: "x" }, as)],
        ["Revoke", () => keys.revoke({ id }, as)],
        ["GetKey", () => keys.getKey({ id }, as)],
        ["ListKeys", () => keys.listKeys({ tenantId: t("globex") }, as)],
        ["UpdateKey", () => keys.updateKey({ id, name: "pwned", updateMask: { paths: ["name"] } }, as)],
        ["SetSetting", () => settings.setSetting({ setting: { tenantId: t("globex"), key: "k", value: "v", valueType: SettingType.STRING } }, as)],
        ["GetSetting", () => settings.getSetting({ tenantId: t("globex"), key: "secret.flag" }, as)],
        ["ListSettings", () => settings.listSettings({ tenantId: t("globex") }, as)],
        ["DeleteSetting", () => settings.deleteSetting({ tenantId: t("globex"), key: "secret.flag" }, as)],
      ];
      for (const [name, attempt] of attempts) {
        const error = await rpcError(attempt());
        expect(error.code, name).toBe(Code.NotFound);
      }
      // Nothing changed on the other side.
      const after = await keys.getKey({ id }, { headers: adminHeaders });
      expect(after.apiKey).toMatchObject({ name: "test", enabled: true });
      expect(after.apiKey?.revokedAt).toBeUndefined();
      await settings.getSetting({ tenantId: t("globex"), key: "secret.flag" }, { headers: adminHeaders });

      // Within its own tenant the tenant admin manages freely, with an empty tenant_id meaning its own.
      const own = await keys.issue({ name: "child" }, as);
      expect(own.apiKey).toMatchObject({ tenantId: t("acme"), createdBy: tenantAdmin.apiKey!.id });
      const listed = await keys.listKeys({}, as);
      expect(listed.apiKeys.map((k) => k.tenantId).every((x) => x === t("acme"))).toBe(true);
    });

    it.runIf(database.available)("rejects bad management input with a clear message", async () => {
      const h = { headers: adminHeaders };
      const cases: [string, () => Promise<unknown>, Code, RegExp][] = [
        ["Issue without tenant", () => keys.issue({ name: "x" }, h), Code.InvalidArgument, /tenant_id is required/],
        ["Issue bad prefix", () => keys.issue({ tenantId: t("acme"), prefix: "Bad-Prefix" }, h), Code.InvalidArgument, /prefix/],
        ["Issue bad scope", () => keys.issue({ tenantId: t("acme"), scopes: ["a b"] }, h), Code.InvalidArgument, /scopes/],
        ["Issue past expiry", () => keys.issue({ tenantId: t("acme"), expiresAt: timestampFromMs(1000) }, h), Code.InvalidArgument, /expires_at/],
        ["Issue bad timestamp", () => keys.issue({ tenantId: t("acme"), expiresAt: { seconds: 10n ** 15n, nanos: 0 } }, h), Code.InvalidArgument, /expires_at/],
        ["Revoke empty id", () => keys.revoke({ id: "" }, h), Code.InvalidArgument, /id is required/],
        ["Revoke unknown id", () => keys.revoke({ id: "key_unknown" }, h), Code.NotFound, /key "key_unknown" not found/],
        ["GetKey unknown id", () => keys.getKey({ id: "key_unknown" }, h), Code.NotFound, /not found/],
        ["GetKey oversized id", () => keys.getKey({ id: "k".repeat(1000) }, h), Code.InvalidArgument, /id must be at most/],
        ["ListKeys bad token", () => keys.listKeys({ tenantId: t("acme"), pageToken: "bm9wZQ" }, h), Code.InvalidArgument, /page_token/],
        ["ListKeys negative size", () => keys.listKeys({ tenantId: t("acme"), pageSize: -5 }, h), Code.InvalidArgument, /page_size/],
        ["UpdateKey unknown path", () => keys.updateKey({ id: "key_x", updateMask: { paths: ["hash"] } }, h), Code.InvalidArgument, /update_mask path "hash"/],
        ["UpdateKey no mask", () => keys.updateKey({ id: "key_x" }, h), Code.InvalidArgument, /update_mask/],
        ["UpdateKey unknown id", () => keys.updateKey({ id: "key_x", updateMask: { paths: ["name"] } }, h), Code.NotFound, /not found/],
        ["SetSetting bad int", () => settings.setSetting({ setting: { tenantId: t("acme"), key: "n", value: "12x", valueType: SettingType.INT } }, h), Code.InvalidArgument, /not an integer/],
        ["SetSetting bad bool", () => settings.setSetting({ setting: { tenantId: t("acme"), key: "b", value: "yes", valueType: SettingType.BOOL } }, h), Code.InvalidArgument, /"true" or "false"/],
        ["SetSetting bad json", () => settings.setSetting({ setting: { tenantId: t("acme"), key: "j", value: "{", valueType: SettingType.JSON } }, h), Code.InvalidArgument, /JSON/],
        ["SetSetting unspecified type", () => settings.setSetting({ setting: { tenantId: t("acme"), key: "u", value: "v" } }, h), Code.InvalidArgument, /value_type/],
        ["SetSetting unknown enum", () => settings.setSetting({ setting: { tenantId: t("acme"), key: "u", value: "v", valueType: 99 as SettingType } }, h), Code.InvalidArgument, /value_type/],
        ["SetSetting missing setting", () => settings.setSetting({}, h), Code.InvalidArgument, /tenant_id is required/],
        ["GetSetting unknown", () => settings.getSetting({ tenantId: t("acme"), key: "nope" }, h), Code.NotFound, /setting "nope" not found/],
        ["DeleteSetting unknown", () => settings.deleteSetting({ tenantId: t("acme"), key: "nope" }, h), Code.NotFound, /not found/],
        ["ListSettings bad token", () => settings.listSettings({ tenantId: t("acme"), pageToken: "!!" }, h), Code.InvalidArgument, /page_token/],
      ];
      for (const [name, call, code, message] of cases) {
        // protobuf-es refuses to write an out-of-range Timestamp as JSON, so this one
        // cannot leave a JSON client; the binary clients cover the server side.
        if (name === "Issue bad timestamp" && clients.kind === "connect-json") continue;
        const error = await rpcError(call());
        expect(error.code, name).toBe(code);
        expect(error.rawMessage, name).toMatch(message);
      }
    });

    it.runIf(database.available)("pages through keys and settings", async () => {
      const tenant = t("paging");
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) ids.push((await issue(tenant, { name: `k${i}` })).apiKey!.id);
      await keys.revoke({ id: ids[0]! }, { headers: adminHeaders });
      const seen: string[] = [];
      let pageToken = "";
      do {
        const page = await keys.listKeys({ tenantId: tenant, pageSize: 2, pageToken }, { headers: adminHeaders });
        seen.push(...page.apiKeys.map((k) => k.id));
        pageToken = page.nextPageToken;
      } while (pageToken);
      expect(new Set(seen)).toEqual(new Set(ids.slice(1)));
      const all = await keys.listKeys({ tenantId: tenant, includeRevoked: true }, { headers: adminHeaders });
      expect(all.apiKeys).toHaveLength(5);
      expect(all.apiKeys.find((k) => k.id === ids[0])?.revokedAt).toBeDefined();

      for (const k of ["c", "a", "b"]) {
        await settings.setSetting(
          { setting: { tenantId: tenant, key: k, value: "1", valueType: SettingType.INT, description: "d", descriptionAr: "وصف" } },
          { headers: adminHeaders },
        );
      }
      const p1 = await settings.listSettings({ tenantId: tenant, pageSize: 2 }, { headers: adminHeaders });
      const p2 = await settings.listSettings({ tenantId: tenant, pageSize: 2, pageToken: p1.nextPageToken }, { headers: adminHeaders });
      expect([...p1.settings, ...p2.settings].map((s) => s.key)).toEqual(["a", "b", "c"]);
      expect(p2.nextPageToken).toBe("");
      expect(p1.settings[0]?.descriptionAr).toBe("وصف");
    });

    it.runIf(database.available)("serves typed settings, public ones to every key of the tenant", async () => {
      const tenant = t("settings");
      const h = { headers: adminHeaders };
      const set = await settings.setSetting(
        { setting: { tenantId: tenant, key: "limits.max", value: "-42", valueType: SettingType.INT, description: "max", descriptionAr: "الحد", isPublic: true } },
        h,
      );
      expect(set.setting).toMatchObject({ tenantId: tenant, key: "limits.max", value: "-42", valueType: SettingType.INT, descriptionAr: "الحد", isPublic: true });
      expect(set.setting?.updatedAt).toBeDefined();
      await settings.setSetting({ setting: { tenantId: tenant, key: "ui.theme", value: '{"dark":true}', valueType: SettingType.JSON } }, h);
      const reader = await issue(tenant, { scopes: ["read"] });
      const visible = await settings.listSettings({}, { headers: bearer(reader.key) });
      expect(visible.settings.map((s) => s.key)).toEqual(["limits.max"]);
      const hidden = await rpcError(settings.getSetting({ key: "ui.theme" }, { headers: bearer(reader.key) }));
      expect(hidden.code).toBe(Code.NotFound);
      expect((await settings.getSetting({ tenantId: tenant, key: "ui.theme" }, h)).setting?.value).toBe('{"dark":true}');
      await settings.deleteSetting({ tenantId: tenant, key: "ui.theme" }, h);
      expect((await rpcError(settings.getSetting({ tenantId: tenant, key: "ui.theme" }, h))).code).toBe(Code.NotFound);
    });

    it.runIf(database.available)("counts usage in memory and writes it behind", async () => {
      const issued = await issue(t("usage"));
      for (let i = 0; i < 7; i++) expect((await keys.verify({ key: issued.key })).valid).toBe(true);
      // Pending counts are visible at once ...
      expect((await keys.getKey({ id: issued.apiKey!.id }, { headers: adminHeaders })).apiKey?.requestCount).toBe(7n);
      await kw.app.usage.flush();
      // ... and after the flush they come from the database, counted once.
      const stored = await kw.app.database.keys.findById(issued.apiKey!.id);
      expect(stored?.requestCount).toBe(7);
      expect(stored?.lastUsedAt).not.toBeNull();
      expect((await keys.getKey({ id: issued.apiKey!.id }, { headers: adminHeaders })).apiKey?.requestCount).toBe(7n);
    });
  });
});
