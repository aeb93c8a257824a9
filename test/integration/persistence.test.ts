// Everything acknowledged survives a restart: keys, revocations, settings, and
// usage counted before a graceful stop.
import { afterAll, describe, expect, it } from "vitest";
import { KeyService, VerifyCode } from "../../src/gen/keyward/v1/keys_pb.js";
import { SettingsService, SettingType } from "../../src/gen/keyward/v1/settings_pb.js";
import { connectClients } from "../helpers/clients.js";
import { testDatabases, type TestDatabaseHandle } from "../helpers/databases.js";
import { adminHeaders, startKeyward } from "../helpers/server.js";

const databases = await testDatabases();

describe.each(databases)("restart on $kind", (factory) => {
  let handle: TestDatabaseHandle | undefined;
  afterAll(() => handle?.drop());

  it.runIf(factory.available)("keeps keys, revocations, settings and flushed usage", async () => {
    handle = await factory.create();
    const clients = connectClients("connect-grpc");
    const first = await startKeyward({ databaseUrl: handle.url });
    const keys = clients.client(KeyService, first.baseUrl);
    const settings = clients.client(SettingsService, first.baseUrl);
    const kept = await keys.issue({ tenantId: "acme", nameAr: "مفتاح", scopes: ["a"] }, { headers: adminHeaders });
    const revoked = await keys.issue({ tenantId: "acme" }, { headers: adminHeaders });
    await keys.revoke({ id: revoked.apiKey!.id, reason: "rotated" }, { headers: adminHeaders });
    await settings.setSetting(
      { setting: { tenantId: "acme", key: "max", value: "7", valueType: SettingType.INT, descriptionAr: "الحد الأقصى" } },
      { headers: adminHeaders },
    );
    const n = 25;
    for (let i = 0; i < n; i++) expect((await keys.verify({ key: kept.key, requiredScopes: ["a"] })).valid).toBe(true);
    // A graceful stop flushes the counts that were only in memory.
    await first.stop();

    const second = await startKeyward({ databaseUrl: handle.url });
    try {
      const keys2 = clients.client(KeyService, second.baseUrl);
      const settings2 = clients.client(SettingsService, second.baseUrl);
      const again = await keys2.verify({ key: kept.key, requiredScopes: ["a"] });
      expect(again.code).toBe(VerifyCode.VALID);
      expect(again.apiKey?.nameAr).toBe("مفتاح");
      expect((await keys2.verify({ key: revoked.key })).code).toBe(VerifyCode.REVOKED);
      const stored = await keys2.getKey({ id: kept.apiKey!.id }, { headers: adminHeaders });
      // n before the restart, plus the one verification just above (pending).
      expect(stored.apiKey?.requestCount).toBe(BigInt(n + 1));
      const setting = await settings2.getSetting({ tenantId: "acme", key: "max" }, { headers: adminHeaders });
      expect(setting.setting).toMatchObject({ value: "7", valueType: SettingType.INT, descriptionAr: "الحد الأقصى" });
    } finally {
      await second.stop();
    }
  });
});
