// connect-node's router served straight off keyward's HTTP/2 streams
// (src/transport/h2/connect-streams.ts), with keyward's health service behind
// it: a streaming call's signal reaches the handler when the client cancels,
// and a request body larger than the stream window is read whole.
import { connect as http2Connect, constants } from "node:http2";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { createConnectRouter, createClient } from "@connectrpc/connect";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Health, HealthCheckRequestSchema, HealthCheckResponse_ServingStatus as Status, HealthCheckResponseSchema } from "../../src/gen/grpc/health/v1/health_pb.js";
import { createGrpcUnaryHandler, frame } from "../../src/transport/grpc-unary.js";
import { createH2ConnectHandler } from "../../src/transport/h2/connect-streams.js";
import { createHealthService, createHealthState, type HealthState } from "../../src/transport/health.js";
import { createKeywardServer, type KeywardServer } from "../../src/transport/server.js";
import { connectTransport } from "../helpers/clients.js";

let server: KeywardServer;
let baseUrl: string;
let state: HealthState;
let subscribers: number;

beforeEach(async () => {
  const inner = createHealthState({ services: ["keyward.v1.KeyService"] });
  inner.set(true);
  subscribers = 0;
  // Counts live Watch subscriptions: a handler whose signal fired has unsubscribed.
  state = Object.assign(Object.create(inner) as HealthState, {
    subscribe(listener: () => void) {
      subscribers++;
      const unsubscribe = inner.subscribe(listener);
      return () => {
        subscribers--;
        unsubscribe();
      };
    },
  });
  const router = createConnectRouter({ readMaxBytes: 1 << 20 });
  router.service(Health, createHealthService(state));
  server = createKeywardServer({
    unary: createGrpcUnaryHandler({ maxMessageBytes: 1 << 20, methods: [] }),
    rpc: createH2ConnectHandler({ router }),
    handler: (_req, res) => {
      res.statusCode = 404;
      res.end();
    },
  });
  baseUrl = `http://127.0.0.1:${(await server.listen("127.0.0.1", 0)).port}`;
});

afterEach(() => server.close(500));

describe("connect-node's router on keyward's HTTP/2 streams", () => {
  it("a Watch the client cancels ends its handler; the connection keeps serving", async () => {
    const client = createClient(Health, connectTransport("connect-grpc", baseUrl));
    const abort = new AbortController();
    const seen: Status[] = [];
    const watching = (async () => {
      for await (const m of client.watch({ service: "" }, { signal: abort.signal })) {
        seen.push(m.status);
        abort.abort();
      }
    })().catch(() => {});
    await watching;
    expect(seen).toEqual([Status.SERVING]);
    for (let i = 0; i < 50 && subscribers > 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(subscribers).toBe(0);
    expect((await client.check({ service: "" })).status).toBe(Status.SERVING);
  });

  it("reads a request body larger than the stream window whole before the handler answers", async () => {
    const session = http2Connect(baseUrl);
    try {
      // 200 KB of unknown fields around the service name: past the 64 KiB window, under readMaxBytes.
      const padding = Buffer.concat([Buffer.from([0xfa, 0x3f]), Buffer.from([0xc0, 0x9a, 0x0c]), Buffer.alloc(200_000, 0x61)]);
      const message = Buffer.concat([Buffer.from(toBinary(HealthCheckRequestSchema, create(HealthCheckRequestSchema, { service: "keyward.v1.KeyService" }))), padding]);
      const answer = await new Promise<{ status: unknown; body: Buffer }>((resolve, reject) => {
        const req = session.request({ ":method": "POST", ":path": "/grpc.health.v1.Health/Watch", "content-type": "application/grpc", te: "trailers" });
        let status: unknown;
        const chunks: Buffer[] = [];
        req.on("response", (h) => (status = h[":status"]));
        req.on("data", (c: Buffer) => {
          chunks.push(c);
          // One message is enough: cancel the stream as a client would.
          req.close(constants.NGHTTP2_CANCEL);
        });
        req.on("close", () => resolve({ status, body: Buffer.concat(chunks) }));
        req.on("error", reject);
        req.end(frame(message));
      });
      expect(answer.status).toBe(200);
      expect(fromBinary(HealthCheckResponseSchema, answer.body.subarray(5)).status).toBe(Status.SERVING);
    } finally {
      session.close();
    }
  });
});
