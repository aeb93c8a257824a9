// grpc.health.v1.Health against a real keyward: Check (lean gRPC path and the
// Connect router), Watch (server streaming through the router) and a drain:
// stop() must report NOT_SERVING to watchers before their streams end.
import http2 from "node:http2";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  Health,
  HealthCheckRequestSchema,
  HealthCheckResponse_ServingStatus as Status,
  HealthCheckResponseSchema,
} from "../../src/gen/grpc/health/v1/health_pb.js";
import { Code, connectClients, connectTransport, grpcJsClients, rpcError, type ClientFactory } from "../helpers/clients.js";
import { startKeyward, type RunningKeyward } from "../helpers/server.js";

const SERVICES = ["", "keyward.v1.KeyService", "keyward.v1.SettingsService", "envoy.service.auth.v3.Authorization"];

interface WatchEvents {
  statuses: Status[];
  /** Resolves with the final gRPC status code when the stream ends. */
  ended: Promise<number>;
  /** Resolves once `count` statuses have arrived. */
  received(count: number): Promise<Status[]>;
  cancel(): void;
}

/** Health/Watch through a real grpc-js client (HTTP/2, binary). */
function grpcWatch(channel: grpc.Client, service: string): WatchEvents {
  const call = channel.makeServerStreamRequest(
    "/grpc.health.v1.Health/Watch",
    (m: { service: string }) => Buffer.from(toBinary(HealthCheckRequestSchema, create(HealthCheckRequestSchema, m))),
    (b: Buffer) => fromBinary(HealthCheckResponseSchema, b),
    { service },
  );
  const statuses: Status[] = [];
  const waiters: (() => void)[] = [];
  call.on("data", (m: { status: Status }) => {
    statuses.push(m.status);
    for (const w of waiters.splice(0)) w();
  });
  const ended = new Promise<number>((resolve) => {
    call.on("status", (s: grpc.StatusObject) => resolve(s.code));
    call.on("error", () => {});
  });
  return {
    statuses,
    ended,
    async received(count) {
      while (statuses.length < count) await new Promise<void>((r) => waiters.push(r));
      return statuses.slice(0, count);
    },
    cancel: () => call.cancel(),
  };
}

async function readyz(kw: RunningKeyward) {
  const res = await fetch(`${kw.baseUrl}/readyz`);
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe("gRPC health", () => {
  let kw: RunningKeyward;
  beforeAll(async () => {
    kw = await startKeyward();
  });
  afterAll(async () => {
    await kw?.stop();
  });

  const kinds: (() => ClientFactory)[] = [grpcJsClients, () => connectClients("connect-json"), () => connectClients("grpc-web")];
  describe.each(kinds.map((make) => ({ make, kind: make().kind })))(
    "Check through $kind",
    ({ make }) => {
      let clients: ClientFactory;
      beforeAll(() => {
        clients = make();
      });
      afterAll(() => clients?.close());

      it.each(SERVICES)("reports SERVING for %j", async (service) => {
        expect((await clients.client(Health, kw.baseUrl).check({ service })).status).toBe(Status.SERVING);
      });

      it("answers NOT_FOUND for an unknown service", async () => {
        const error = await rpcError(clients.client(Health, kw.baseUrl).check({ service: "keyward.v1.NoSuchService" }));
        expect(error.code).toBe(Code.NotFound);
      });
    },
  );

  it("answers raw gRPC probes on the lean path: an empty message, a service name, and a malformed message", async () => {
    const session = http2.connect(kw.baseUrl);
    session.on("error", () => {});
    const call = (message: Uint8Array) =>
      new Promise<{ status: string | undefined; message: string | undefined; body: Buffer }>((resolve, reject) => {
        const stream = session.request({ ":method": "POST", ":path": "/grpc.health.v1.Health/Check", "content-type": "application/grpc", te: "trailers" });
        const chunks: Buffer[] = [];
        let headers: http2.IncomingHttpHeaders = {};
        stream.on("response", (h) => (headers = h));
        stream.on("data", (c: Buffer) => chunks.push(c));
        stream.on("trailers", (t) => (headers = { ...headers, ...t }));
        stream.on("end", () => resolve({ status: headers["grpc-status"] as string, message: headers["grpc-message"] as string, body: Buffer.concat(chunks) }));
        stream.on("error", reject);
        const frame = Buffer.alloc(5 + message.length);
        frame.writeUInt32BE(message.length, 1);
        frame.set(message, 5);
        stream.end(frame);
      });
    try {
      const serving = toBinary(HealthCheckResponseSchema, create(HealthCheckResponseSchema, { status: Status.SERVING }));
      const empty = await call(new Uint8Array(0));
      expect(empty.status).toBe("0");
      expect(empty.body.subarray(5)).toEqual(Buffer.from(serving));
      const named = await call(toBinary(HealthCheckRequestSchema, create(HealthCheckRequestSchema, { service: SERVICES[1] })));
      expect(named.status).toBe("0");
      expect(fromBinary(HealthCheckResponseSchema, named.body.subarray(5)).status).toBe(Status.SERVING);
      const truncated = await call(Uint8Array.from([0x0a, 0x05, 0x61]));
      expect(truncated.status).toBe(String(Code.InvalidArgument));
      expect(truncated.message).toMatch(/not a valid grpc.health.v1.HealthCheckRequest/);
    } finally {
      session.close();
    }
  });

  it("Watch sends the current status at once, and SERVICE_UNKNOWN for an unknown service without ending", async () => {
    const channel = new grpc.Client(`127.0.0.1:${kw.port}`, grpc.credentials.createInsecure());
    try {
      const known = grpcWatch(channel, "keyward.v1.KeyService");
      expect(await known.received(1)).toEqual([Status.SERVING]);
      const unknown = grpcWatch(channel, "keyward.v1.NoSuchService");
      expect(await unknown.received(1)).toEqual([Status.SERVICE_UNKNOWN]);
      // Still open: it ends only because we cancel it.
      await new Promise((r) => setTimeout(r, 100));
      unknown.cancel();
      known.cancel();
      expect(await unknown.ended).toBe(grpc.status.CANCELLED);
    } finally {
      channel.close();
    }
  });
});

describe("gRPC health through a drain", () => {
  it("stop() reports NOT_SERVING to every watcher before the streams end, then closes", async () => {
    const kw = await startKeyward();
    const channel = new grpc.Client(`127.0.0.1:${kw.port}`, grpc.credentials.createInsecure());
    try {
      const server = grpcWatch(channel, "");
      const authz = grpcWatch(channel, "envoy.service.auth.v3.Authorization");
      // A Connect-protocol watcher too (gRPC over connect-node's transport).
      const connectWatch = createClient(Health, connectTransport("connect-grpc", kw.baseUrl)).watch({ service: "keyward.v1.KeyService" });
      const connectSeen: Status[] = [];
      const connectDone = (async () => {
        for await (const m of connectWatch) connectSeen.push(m.status);
      })();
      await server.received(1);
      await authz.received(1);
      while (connectSeen.length === 0) await new Promise((r) => setTimeout(r, 10));

      const stopped = kw.stop();
      expect(await server.received(2)).toEqual([Status.SERVING, Status.NOT_SERVING]);
      expect(await authz.received(2)).toEqual([Status.SERVING, Status.NOT_SERVING]);
      // The streams end cleanly after the drain status.
      expect(await server.ended).toBe(grpc.status.OK);
      expect(await authz.ended).toBe(grpc.status.OK);
      await connectDone;
      expect(connectSeen).toEqual([Status.SERVING, Status.NOT_SERVING]);
      await stopped;
      await expect(fetch(`${kw.baseUrl}/healthz`)).rejects.toThrow();
    } finally {
      channel.close();
    }
  });

  it("with a drain delay, keeps answering NOT_SERVING (gRPC and /readyz) before the listener closes", async () => {
    const kw = await startKeyward({ env: { KEYWARD_DRAIN_DELAY_SECONDS: "1" } });
    const clients = grpcJsClients();
    try {
      const health = clients.client(Health, kw.baseUrl);
      expect(await readyz(kw)).toEqual({ status: 200, body: { status: "serving", database: "up" } });
      const stopped = kw.stop();
      expect(await readyz(kw)).toEqual({ status: 503, body: { status: "not_serving", reason: "draining", database: "up" } });
      expect((await health.check({ service: "" })).status).toBe(Status.NOT_SERVING);
      expect((await fetch(`${kw.baseUrl}/healthz`)).status).toBe(200);
      await stopped;
    } finally {
      clients.close();
    }
  });
});
