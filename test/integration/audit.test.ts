// The audit trail: every management action recorded with who, when, what and
// the tenant, readable through AuditService behind the tenant wall.
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuditService } from "../../src/gen/keyward/v1/audit_pb.js";
import { KeyService } from "../../src/gen/keyward/v1/keys_pb.js";
import { SettingsService, SettingType } from "../../src/gen/keyward/v1/settings_pb.js";
import { Code, connectClients, rpcError } from "../helpers/clients.js";
import { testDatabases, type TestDatabaseHandle } from "../helpers/databases.js";
import { adminHeaders, bearer, startKeyward, type RunningKeyward } from "../helpers/server.js";

const databases = await testDatabases();

describe.each(databases)("audit trail on $kind", (factory) => {
  let handle: TestDatabaseHandle;
  let kw: RunningKeyward;
  beforeAll(async () => {
    if (!factory.available) return;
    handle = await factory.create();
    kw = await startKeyward({ databaseUrl: handle.url });
  });
  afterAll(async () => {
    await kw?.stop();
    await handle?.drop();
  });

  it.runIf(factory.available)("records issue, update, revoke and setting changes, newest first", async () => {
    const clients = connectClients("connect-grpc");
    const keys = clients.client(KeyService, kw.baseUrl);
    const settings = clients.client(SettingsService, kw.baseUrl);
    const audit = clients.client(AuditService, kw.baseUrl);
    const h = { headers: adminHeaders };

    const started = Date.now();
    const tenantAdmin = await keys.issue({ tenantId: "acme", name: "ops", scopes: ["keyward:admin"] }, h);
    const child = await keys.issue({ name: "child", scopes: ["read"] }, { headers: bearer(tenantAdmin.key) });
    await keys.updateKey(
      { id: child.apiKey!.id, scopes: ["read", "write"], expiresAt: timestampFromMs(Date.now() + 3_600_000), updateMask: { paths: ["scopes", "expires_at"] } },
      h,
    );
    await keys.revoke({ id: child.apiKey!.id, reason: "rotated" }, { headers: bearer(tenantAdmin.key) });
    await keys.revoke({ id: child.apiKey!.id, reason: "twice" }, h);
    await settings.setSetting({ setting: { tenantId: "acme", key: "max", value: "3", valueType: SettingType.INT } }, h);
    await settings.deleteSetting({ tenantId: "acme", key: "max" }, h);
    await keys.issue({ tenantId: "globex", name: "other" }, h);

    const { events, nextPageToken } = await audit.listAuditEvents({ tenantId: "acme" }, h);
    expect(nextPageToken).toBe("");
    expect(events.map((e) => [e.action, e.actor])).toEqual([
      ["setting.delete", "admin"],
      ["setting.set", "admin"],
      ["key.revoke", tenantAdmin.apiKey!.id],
      ["key.update", "admin"],
      ["key.issue", tenantAdmin.apiKey!.id],
      ["key.issue", "admin"],
    ]);
    expect(events.every((e) => e.tenantId === "acme")).toBe(true);
    expect(events[2]).toMatchObject({ target: child.apiKey!.id, details: { reason: "rotated" } });
    expect(events[3]!.details).toEqual({ fields: ["scopes", "expires_at"] });
    const occurred = events.map((e) => Number(e.occurredAt!.seconds) * 1000);
    expect(occurred.every((t) => t >= Math.floor(started / 1000) * 1000 && t <= Date.now())).toBe(true);
    const text = JSON.stringify(events, (_k, v) => (typeof v === "bigint" ? String(v) : v));
    for (const key of [tenantAdmin.key, child.key]) expect(text).not.toContain(key.slice(3));

    // Paging, and the tenant wall.
    const page1 = await audit.listAuditEvents({ tenantId: "acme", pageSize: 4 }, h);
    const page2 = await audit.listAuditEvents({ tenantId: "acme", pageSize: 4, pageToken: page1.nextPageToken }, h);
    expect([...page1.events, ...page2.events].map((e) => e.id)).toEqual(events.map((e) => e.id));
    const own = await audit.listAuditEvents({}, { headers: bearer(tenantAdmin.key) });
    expect(own.events).toHaveLength(6);
    expect((await rpcError(audit.listAuditEvents({ tenantId: "globex" }, { headers: bearer(tenantAdmin.key) }))).code).toBe(Code.NotFound);
    const reader = await keys.issue({ tenantId: "acme", scopes: ["read"] }, h);
    expect((await rpcError(audit.listAuditEvents({}, { headers: bearer(reader.key) }))).code).toBe(Code.PermissionDenied);
    expect((await rpcError(audit.listAuditEvents({ tenantId: "acme" }))).code).toBe(Code.Unauthenticated);
    expect((await rpcError(audit.listAuditEvents({ tenantId: "acme", pageToken: "zz" }, h))).code).toBe(Code.InvalidArgument);
  });
});
