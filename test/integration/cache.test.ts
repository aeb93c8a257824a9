// Verify is served from the in-process cache: a repeated key costs no query,
// concurrent misses cost one, and no Verify writes to the database (usage is
// written behind in one batch).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateKey } from "../../src/core/key-format.js";
import { KeyService, VerifyCode } from "../../src/gen/keyward/v1/keys_pb.js";
import { createDatabase, type Database } from "../../src/storage/database.js";
import { grpcJsClients } from "../helpers/clients.js";
import { testDatabases, type TestDatabaseHandle } from "../helpers/databases.js";
import { adminHeaders, startKeyward, type RunningKeyward } from "../helpers/server.js";

const databases = await testDatabases();
const isWrite = (sql: string) => /^\s*(insert|update|delete)\b/i.test(sql);

describe.each(databases)("the Verify cache on $kind", (factory) => {
  let handle: TestDatabaseHandle;
  let database: Database;
  let kw: RunningKeyward;
  const statements: string[] = [];
  const clients = grpcJsClients();

  beforeAll(async () => {
    if (!factory.available) return;
    handle = await factory.create();
    database = await createDatabase({ url: handle.url, debugQueries: (sql) => statements.push(sql) });
    kw = await startKeyward({ database });
  });
  afterAll(async () => {
    clients.close();
    await kw?.stop();
    await database?.close();
    await handle?.drop();
  });

  it.runIf(factory.available)("answers repeated keys without a query and writes nothing per call", async () => {
    const keys = clients.client(KeyService, kw.baseUrl);
    const issued = await keys.issue({ tenantId: "acme", scopes: ["a"] }, { headers: adminHeaders });
    kw.app.cache.clear();

    statements.length = 0;
    expect((await keys.verify({ key: issued.key, requiredScopes: ["a"] })).valid).toBe(true);
    // One cold miss: one query, a read.
    expect(statements).toHaveLength(1);
    expect(statements[0]).toMatch(/^select/i);

    statements.length = 0;
    for (let i = 0; i < 200; i++) expect((await keys.verify({ key: issued.key, requiredScopes: ["a"] })).valid).toBe(true);
    expect(statements).toEqual([]);

    // Unknown keys are remembered, malformed ones never looked up.
    const unknown = generateKey().key;
    statements.length = 0;
    for (let i = 0; i < 50; i++) {
      expect((await keys.verify({ key: unknown })).code).toBe(VerifyCode.NOT_FOUND);
      expect((await keys.verify({ key: `${unknown.slice(0, -1)}!` })).code).toBe(VerifyCode.NOT_FOUND);
    }
    expect(statements).toHaveLength(1);

    // The 201 valid verifications are written behind, in one batch.
    statements.length = 0;
    await kw.app.usage.flush();
    expect(statements.filter(isWrite)).toHaveLength(1);
    expect((await database.keys.findById(issued.apiKey!.id))?.requestCount).toBe(201);
  });

  it.runIf(factory.available)("coalesces concurrent misses for one key into one query", async () => {
    const keys = clients.client(KeyService, kw.baseUrl);
    const issued = await keys.issue({ tenantId: "acme" }, { headers: adminHeaders });
    kw.app.cache.clear();
    statements.length = 0;
    const results = await Promise.all(Array.from({ length: 50 }, () => keys.verify({ key: issued.key })));
    expect(results.every((r) => r.valid)).toBe(true);
    expect(statements).toHaveLength(1);
  });
});
