// Key material never leaves keyward except once, in the Issue response: not in
// logs (at debug level), not in error messages, not in the database. Every RPC
// is driven, failures included, and everything captured is scanned for the
// plaintext keys, their secret parts and their hashes.
import { readFileSync } from "node:fs";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createKeyHasher } from "../../src/core/key-format.js";
import { AuditService } from "../../src/gen/keyward/v1/audit_pb.js";
import { KeyService } from "../../src/gen/keyward/v1/keys_pb.js";
import { SettingsService, SettingType } from "../../src/gen/keyward/v1/settings_pb.js";
import { connectClients, grpcJsClients } from "../helpers/clients.js";
import { ADMIN_TOKEN } from "../helpers/core.js";
import { testDatabases, type TestDatabaseHandle } from "../helpers/databases.js";
import { adminHeaders, bearer, startKeyward, type RunningKeyward } from "../helpers/server.js";

const sqlite = (await testDatabases()).find((d) => d.kind === "sqlite")!;

describe("no key material outside the Issue response", () => {
  let handle: TestDatabaseHandle;
  let kw: RunningKeyward;
  beforeAll(async () => {
    handle = await sqlite.create();
    kw = await startKeyward({ databaseUrl: handle.url, env: { KEYWARD_LOG_LEVEL: "debug" } });
  });
  afterAll(async () => {
    await kw?.stop();
    await handle?.drop();
  });

  it("keeps keys, secrets and hashes out of logs, errors and storage", async () => {
    const secrets: string[] = [];
    const errors: string[] = [];
    const capture = async (p: Promise<unknown>) => {
      try {
        await p;
      } catch (e) {
        errors.push(e instanceof ConnectError ? `${e.code} ${e.rawMessage}` : String(e));
      }
    };
    for (const factory of [grpcJsClients(), connectClients("connect-json")]) {
      const keys = factory.client(KeyService, kw.baseUrl);
      const settings = factory.client(SettingsService, kw.baseUrl);
      const audit = factory.client(AuditService, kw.baseUrl);
      const h = { headers: adminHeaders };
      const admin = await keys.issue({ tenantId: "acme", scopes: ["keyward:admin"], rateLimit: 1 }, h);
      const plain = await keys.issue({ tenantId: "acme", scopes: ["read"], prefix: "sk_live" }, h);
      secrets.push(admin.key, plain.key);
      const as = { headers: bearer(admin.key) };
      await capture(keys.verify({ key: plain.key, requiredScopes: ["read"] }));
      await capture(keys.verify({ key: plain.key, requiredScopes: ["write"] }));
      await capture(keys.verify({ key: admin.key }));
      await capture(keys.verify({ key: admin.key })); // rate limited
      await capture(keys.verify({ key: plain.key.slice(0, -1) + "x" }));
      await capture(keys.verify({ key: plain.key + "x".repeat(600) }));
      await capture(keys.getKey({ id: plain.apiKey!.id }, as));
      await capture(keys.getKey({ id: plain.key }, as));
      await capture(keys.listKeys({}, as));
      await capture(keys.updateKey({ id: plain.apiKey!.id, expiresAt: timestampFromMs(Date.now() + 1e6), updateMask: { paths: ["expires_at"] } }, as));
      // A JSON client cannot even encode such a field mask; the binary client can.
      if (factory.kind === "grpc-js") await capture(keys.updateKey({ id: plain.apiKey!.id, updateMask: { paths: [plain.key] } }, as));
      await capture(keys.issue({ tenantId: "acme", name: plain.key.slice(0, 300) }, { headers: bearer(plain.key) }));
      await capture(keys.issue({ tenantId: "acme" }, { headers: bearer(plain.key.slice(0, -2) + "zz") }));
      await capture(settings.setSetting({ setting: { tenantId: "acme", key: "k", value: plain.key, valueType: SettingType.INT } }, as));
      await capture(settings.getSetting({ tenantId: "acme", key: plain.key }, { headers: bearer(plain.key) }));
      await capture(settings.listSettings({ pageToken: plain.key }, { headers: bearer(plain.key) }));
      await capture(settings.deleteSetting({ tenantId: "acme", key: "nope" }, as));
      await capture(audit.listAuditEvents({ pageToken: admin.key }, as));
      await capture(keys.revoke({ id: plain.apiKey!.id, reason: "test" }, as));
      await capture(keys.verify({ key: plain.key }));
      await capture(keys.getKey({ id: "key_x" }, { headers: { authorization: `Bearer ${ADMIN_TOKEN}x` } }));
      factory.close();
    }
    await kw.app.usage.flush();
    await kw.stop();

    const hash = createKeyHasher();
    const needles = secrets.flatMap((k) => [k, k.slice(k.lastIndexOf("_") + 1), hash(k)]);
    needles.push(ADMIN_TOKEN);
    const logs = kw.logs.join("");
    const database = readFileSync(handle.url.slice("sqlite:".length)).toString("latin1");
    expect(errors.length).toBeGreaterThan(20);
    for (const needle of needles) {
      expect(logs.includes(needle), `log contains ${needle.slice(0, 6)}…`).toBe(false);
      expect(errors.join("\n").includes(needle), `error contains ${needle.slice(0, 6)}…`).toBe(false);
    }
    for (const key of secrets) {
      // Only the hash is stored (so the hash itself is expected there), never the key or its secret.
      expect(database.includes(key.slice(key.lastIndexOf("_") + 1))).toBe(false);
      expect(database.includes(hash(key))).toBe(true);
    }
  });
});
