// Fail closed when the database cannot be reached, with real PostgreSQL
// connections rather than mocks:
//  - keyward pointed at a PostgreSQL port nobody listens on: it still starts
//    and listens, health says NOT_SERVING, and every key it cannot look up is
//    denied with 503 / UNAVAILABLE (Check and forward-auth alike);
//  - keyward behind a TCP proxy to a real PostgreSQL: it starts while the proxy
//    is down, turns SERVING once it comes up, then, with the proxy down again,
//    keeps allowing cached keys and denies uncached ones with 503.
import { createServer, connect as netConnect, type AddressInfo, type Server, type Socket } from "node:net";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { createClient, type Client } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateKey } from "../../src/core/key-format.js";
import { Authorization, type CheckRequestSchema, type CheckResponse } from "../../src/gen/envoy/service/auth/v3/external_auth_pb.js";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../../src/gen/grpc/health/v1/health_pb.js";
import { KeyService } from "../../src/gen/keyward/v1/keys_pb.js";
import { Code, connectClients, connectTransport, grpcJsClients, rpcError, type ClientFactory } from "../helpers/clients.js";
import { testDatabases, type TestDatabaseHandle } from "../helpers/databases.js";
import { adminHeaders, startKeyward, type RunningKeyward } from "../helpers/server.js";

const check = (key: string): MessageInitShape<typeof CheckRequestSchema> => ({
  attributes: { request: { http: { method: "GET", path: "/orders", headers: { "x-api-key": key } } } },
});

function deniedStatus(response: CheckResponse) {
  if (response.httpResponse.case !== "deniedResponse") return { allowed: response.status?.code === 0 };
  const d = response.httpResponse.value;
  return { rpcCode: response.status?.code, http: d.status?.code, code: (JSON.parse(d.body) as { code: string }).code };
}

async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

// The change feed (if any) keeps its own connection; keep it out of these tests.
const env = { KEYWARD_CHANGE_FEED: "off" };

describe("database unreachable from the start", () => {
  let kw: RunningKeyward;
  let clients: ClientFactory;
  let authz: Client<typeof Authorization>;

  beforeAll(async () => {
    kw = await startKeyward({ databaseUrl: `postgres://keyward@127.0.0.1:${await closedPort()}/keyward`, env });
    clients = grpcJsClients();
    authz = clients.client(Authorization, kw.baseUrl);
  });
  afterAll(async () => {
    clients?.close();
    await kw?.stop();
  });

  it("listens anyway and reports NOT_SERVING (gRPC health, /readyz) while /healthz stays 200", async () => {
    expect((await clients.client(Health, kw.baseUrl).check({ service: "" })).status).toBe(Status.NOT_SERVING);
    expect((await clients.client(Health, kw.baseUrl).check({ service: "envoy.service.auth.v3.Authorization" })).status).toBe(
      Status.NOT_SERVING,
    );
    const ready = await fetch(`${kw.baseUrl}/readyz`);
    expect(ready.status).toBe(503);
    expect(await ready.json()).toEqual({ status: "not_serving", reason: "database unreachable", database: "down" });
    expect((await fetch(`${kw.baseUrl}/healthz`)).status).toBe(200);
    expect(kw.logs.join("")).toContain("database unreachable at start");
  });

  it("denies a key it cannot look up with 503 UNAVAILABLE, on Check and forward-auth", async () => {
    const { key } = generateKey();
    expect(deniedStatus(await authz.check(check(key)))).toEqual({ rpcCode: 14, http: 503, code: "unavailable" });
    const viaConnect = createClient(Authorization, connectTransport("connect-json", kw.baseUrl));
    expect(deniedStatus(await viaConnect.check(check(key)))).toEqual({ rpcCode: 14, http: 503, code: "unavailable" });
    const forward = await fetch(`${kw.baseUrl}/v1/authz`, { headers: { "x-api-key": key } });
    expect(forward.status).toBe(503);
    expect(await forward.json()).toEqual({ error: "authorization is temporarily unavailable", code: "unavailable" });
    // Verify reports the same condition as an RPC status.
    expect((await rpcError(clients.client(KeyService, kw.baseUrl).verify({ key }))).code).toBe(Code.Unavailable);
    // A malformed key needs no database: still a plain 401.
    expect(deniedStatus(await authz.check(check("kw_typo")))).toEqual({ rpcCode: 16, http: 401, code: "invalid_key" });
    const secret = key.slice(key.indexOf("_") + 1);
    expect(kw.logs.join("")).not.toContain(secret);
  });
});

/** A TCP proxy to PostgreSQL that the test can cut and restore on the same port. */
async function createPgProxy(target: URL) {
  const sockets = new Set<Socket>();
  let server: Server | undefined;
  let port = 0;
  const up = async () => {
    server = createServer((client) => {
      const upstream = netConnect(Number(target.port || 5432), target.hostname);
      for (const s of [client, upstream]) {
        sockets.add(s);
        s.on("close", () => sockets.delete(s));
        s.on("error", () => {});
      }
      client.pipe(upstream).pipe(client);
      client.on("close", () => upstream.destroy());
      upstream.on("close", () => client.destroy());
    });
    await new Promise<void>((r) => server!.listen(port, "127.0.0.1", r));
    port = (server.address() as AddressInfo).port;
  };
  const down = async () => {
    const closing = server ? new Promise<void>((r) => server!.close(() => r())) : Promise.resolve();
    server = undefined;
    for (const s of sockets) s.destroy();
    await closing;
  };
  await up();
  return { port: () => port, up, down };
}

const databases = await testDatabases();
const postgres = databases.find((d) => d.kind === "postgresql")!;

describe.runIf(postgres.available)("PostgreSQL behind a proxy that goes down and up", () => {
  let handle: TestDatabaseHandle;
  let proxy: Awaited<ReturnType<typeof createPgProxy>>;
  let kw: RunningKeyward;
  let clients: ClientFactory;
  let admin: ClientFactory;

  beforeAll(async () => {
    handle = await postgres.create();
    const target = new URL(handle.url);
    proxy = await createPgProxy(target);
    await proxy.down();
    const viaProxy = new URL(handle.url);
    viaProxy.host = `127.0.0.1:${proxy.port()}`;
    kw = await startKeyward({ databaseUrl: viaProxy.toString(), env });
    clients = grpcJsClients();
    admin = connectClients("connect-json");
  });
  afterAll(async () => {
    clients?.close();
    admin?.close();
    await kw?.stop();
    await proxy?.down();
    await handle?.drop();
  });

  it("starts NOT_SERVING, turns SERVING when the database appears, then fails closed only for uncached keys", async () => {
    const watch = createClient(Health, connectTransport("connect-grpc", kw.baseUrl)).watch({ service: "" });
    const it = watch[Symbol.asyncIterator]();
    expect((await it.next()).value?.status).toBe(Status.NOT_SERVING);
    await proxy.up();
    // The background migration retry (backoff from 0.5 s) finds the database.
    expect((await it.next()).value?.status).toBe(Status.SERVING);
    await it.return?.();

    const keys = admin.client(KeyService, kw.baseUrl);
    const cached = await keys.issue({ tenantId: "acme", name: "cached" }, { headers: adminHeaders });
    const cold = await keys.issue({ tenantId: "acme", name: "cold" }, { headers: adminHeaders });
    // Issue primes the cache; start cold and warm up only the first key.
    kw.app.cache.clear();
    const authz = clients.client(Authorization, kw.baseUrl);
    expect(deniedStatus(await authz.check(check(cached.key)))).toEqual({ allowed: true });

    await proxy.down();
    expect(deniedStatus(await authz.check(check(cached.key)))).toEqual({ allowed: true });
    expect(deniedStatus(await authz.check(check(cold.key)))).toEqual({ rpcCode: 14, http: 503, code: "unavailable" });
    const forward = await fetch(`${kw.baseUrl}/v1/authz`, { headers: { authorization: `Bearer ${cold.key}` } });
    expect(forward.status).toBe(503);
    // A database lost after start does not flip health: cached keys are still served.
    expect((await clients.client(Health, kw.baseUrl).check({ service: "" })).status).toBe(Status.SERVING);

    await proxy.up();
    expect(deniedStatus(await authz.check(check(cold.key)))).toEqual({ allowed: true });
  });
});
