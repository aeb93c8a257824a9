// A real database outage: a TCP proxy between keyward and PostgreSQL is cut and
// restored. Cached keys keep verifying (stale-if-error), misses and management
// calls fail closed with UNAVAILABLE, usage counted meanwhile is written once
// after recovery, and the pool reconnects without a restart.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KeyService, VerifyCode } from "../../src/gen/keyward/v1/keys_pb.js";
import { Code, connectClients, grpcJsClients, rpcError } from "../helpers/clients.js";
import { testDatabases, type TestDatabaseHandle } from "../helpers/databases.js";
import { adminHeaders, startKeyward, type RunningKeyward } from "../helpers/server.js";
import { startTcpProxy, type TcpProxy } from "../helpers/tcp-proxy.js";

const pg = (await testDatabases()).find((d) => d.kind === "postgresql")!;

async function eventually<T>(fn: () => Promise<T>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

describe.runIf(pg.available)("database outage (PostgreSQL behind a TCP proxy)", () => {
  let handle: TestDatabaseHandle;
  let proxy: TcpProxy;
  let kw: RunningKeyward;
  const clients = grpcJsClients();
  const unhandled: unknown[] = [];
  const onUnhandled = (e: unknown) => unhandled.push(e);

  beforeAll(async () => {
    process.on("unhandledRejection", onUnhandled);
    handle = await pg.create();
    const url = new URL(handle.url);
    proxy = await startTcpProxy({ host: url.hostname, port: Number(url.port || 5432) });
    url.port = String(proxy.port);
    kw = await startKeyward({
      databaseUrl: url.toString(),
      env: { KEYWARD_CACHE_TTL_SECONDS: "1", KEYWARD_STALE_IF_ERROR_SECONDS: "300", KEYWARD_USAGE_FLUSH_SECONDS: "3600" },
    });
  });
  afterAll(async () => {
    process.off("unhandledRejection", onUnhandled);
    clients.close();
    await kw?.stop();
    await proxy?.close();
    await handle?.drop();
  });

  it("serves cached keys, fails closed on misses and management, and recovers by itself", async () => {
    const keys = clients.client(KeyService, kw.baseUrl);
    const json = connectClients("connect-json").client(KeyService, kw.baseUrl);
    const cached = await keys.issue({ tenantId: "acme", scopes: ["a"] }, { headers: adminHeaders });
    const cold = await keys.issue({ tenantId: "acme" }, { headers: adminHeaders });
    // Each issue's change notification evicts its key from the cache when it arrives; one
    // arriving after the verify below would evict the entry the outage must be served from.
    await eventually(async () => expect(kw.app.changeFeed!.stats().evictions).toBeGreaterThanOrEqual(2));
    kw.app.cache.clear();
    expect((await keys.verify({ key: cached.key, requiredScopes: ["a"] })).valid).toBe(true);
    await kw.app.usage.flush();

    proxy.cut();
    // Past the 1 s TTL the entry is stale; storage fails, so the stale entry answers.
    await new Promise((r) => setTimeout(r, 1200));
    const during = 20;
    for (let i = 0; i < during; i++) {
      const res = await keys.verify({ key: cached.key, requiredScopes: ["a"] });
      expect(res.code).toBe(VerifyCode.VALID);
    }
    expect(kw.app.cache.stats().staleServed).toBeGreaterThanOrEqual(1);

    const miss = await rpcError(keys.verify({ key: cold.key }));
    expect(miss.code).toBe(Code.Unavailable);
    expect(miss.rawMessage).toBe("database unavailable");
    const missJson = await rpcError(json.verify({ key: cold.key }));
    expect(missJson.code).toBe(Code.Unavailable);
    const manage = await rpcError(keys.issue({ tenantId: "acme" }, { headers: adminHeaders }));
    expect(manage.code).toBe(Code.Unavailable);
    await expect(kw.app.usage.flush()).rejects.toThrow();
    expect(kw.app.usage.pending(cached.apiKey!.id)?.count).toBe(during);

    proxy.restore();
    // No restart: the pool reconnects on its own.
    const issued = await eventually(() => keys.issue({ tenantId: "acme" }, { headers: adminHeaders }));
    expect(issued.key).toMatch(/^kw_/);
    expect((await keys.verify({ key: cold.key })).code).toBe(VerifyCode.VALID);
    await kw.app.usage.flush();
    const stored = await keys.getKey({ id: cached.apiKey!.id }, { headers: adminHeaders });
    // 1 before the outage + 20 during it, written exactly once.
    expect(stored.apiKey?.requestCount).toBe(BigInt(1 + during));
    expect(unhandled).toEqual([]);
    // Nothing the outage produced leaked a key into the logs.
    expect(kw.logs.join("")).not.toContain(cached.key);
  });

  it("looks a cache miss up again when its pooled connection turns out dead", async () => {
    const keys = clients.client(KeyService, kw.baseUrl);
    const cold = await eventually(() => keys.issue({ tenantId: "acme" }, { headers: adminHeaders }));
    kw.app.cache.clear();
    // The pool holds idle connections; the next one written to is reset, as a
    // connection that died unnoticed (database restart, NAT timeout) fails when used.
    proxy.breakNextWrite();
    const res = await keys.verify({ key: cold.key });
    expect(proxy.broken).toBe(1);
    expect(res.code).toBe(VerifyCode.VALID);
  });
});
