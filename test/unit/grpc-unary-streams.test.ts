// What the lean gRPC path leaves on a node:http2 stream once its call is over.
// A closed stream's listener lists must be empty but for the error guard:
// node:http2 hangs per-stream closures there, and when V8 has moved those lists
// to the old generation they keep every finished stream alive through
// scavenges (see onCallClose in src/transport/grpc-unary.ts).
import { connect, createServer, type Http2Server, type ServerHttp2Stream } from "node:http2";
import type { AddressInfo } from "node:net";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { invalidArgument } from "../../src/core/errors.js";
import { createGrpcUnaryHandler, frame } from "../../src/transport/grpc-unary.js";

const PATH = "/test.v1.Echo/Echo";
let server: Http2Server;
let baseUrl: string;
let streams: ServerHttp2Stream[];

beforeEach(async () => {
  const unary = createGrpcUnaryHandler({
    maxMessageBytes: 1024,
    methods: [
      {
        path: PATH,
        decode: (payload) => {
          if (payload[0] === 0xff) throw invalidArgument("bad request");
          return payload;
        },
        handle: (request) => request,
        encode: (response) => response as Uint8Array,
      },
    ],
  });
  streams = [];
  server = createServer();
  server.on("stream", (stream, headers) => {
    streams.push(stream);
    unary.serve(stream, headers);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterEach(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

/** One unary call; resolves with the grpc-status trailer (or header, for trailers-only answers). */
function call(body: Uint8Array, options: { reset?: boolean } = {}): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const session = connect(baseUrl);
    session.on("error", reject);
    const req = session.request({ ":method": "POST", ":path": PATH, "content-type": "application/grpc", te: "trailers" });
    let status: string | undefined;
    req.on("response", (headers) => (status ??= headers["grpc-status"] as string | undefined));
    req.on("trailers", (trailers) => (status = trailers["grpc-status"] as string | undefined));
    req.on("data", () => {});
    req.on("error", () => {});
    req.on("close", () => {
      session.close();
      resolve(status);
    });
    if (options.reset) {
      // Half a message, then cancel: the server never sees the body end.
      req.write(frame(body).subarray(0, 3), () => setTimeout(() => req.close(8), 20));
    } else {
      req.end(frame(body));
    }
  });
}

async function closed(stream: ServerHttp2Stream): Promise<void> {
  if (!stream.closed || !stream.destroyed) await new Promise((resolve) => stream.once("close", resolve));
  // Every 'close' listener has run by the next turn.
  await new Promise((resolve) => setImmediate(resolve));
}

describe("lean gRPC path: a closed stream keeps no listeners", () => {
  it.each([
    ["an answered call", new Uint8Array([1, 2, 3]), {}, "0"],
    ["a trailers-only error", new Uint8Array([0xff]), {}, "3"],
    ["a call the client cancels", new Uint8Array([1, 2, 3]), { reset: true }, undefined],
  ] as const)("%s", async (_name, body, options, status) => {
    expect(await call(body, options)).toBe(status);
    expect(streams).toHaveLength(1);
    const stream = streams[0]!;
    await closed(stream);
    expect(stream.eventNames()).toEqual(["error"]);
    expect(stream.listenerCount("error")).toBe(1);
    // The guard stays: a late error must not go uncaught.
    expect(() => stream.emit("error", new Error("late"))).not.toThrow();
  });
});
