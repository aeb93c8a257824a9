// What keyward's HTTP/2 server leaves on a stream once it is closed. On the
// lean gRPC path (keyward's own streams): closed, with no call state or
// callbacks still holding the body. On the compat path (node:http2 streams
// behind the inner bridge): an empty listener table but for the error guard;
// node:http2 hangs per-stream closures there, and when V8 has moved those
// tables to the old generation they keep every finished stream alive through
// scavenges (see releaseListeners in src/transport/server.ts).
import { connect, type ServerHttp2Stream } from "node:http2";
import type { H2Stream } from "../../src/transport/h2/connection.js";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { invalidArgument } from "../../src/core/errors.js";
import { createGrpcUnaryHandler, frame } from "../../src/transport/grpc-unary.js";
import { createKeywardServer, type KeywardServer } from "../../src/transport/server.js";

const PATH = "/test.v1.Echo/Echo";
let server: KeywardServer;
let baseUrl: string;
let streams: ServerHttp2Stream[];
let lean: H2Stream[];

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
  lean = [];
  server = createKeywardServer({
    unary: {
      accepts: (headers) => unary.accepts(headers),
      serve: (stream) => {
        lean.push(stream);
        unary.serve(stream);
      },
    },
    // Everything else goes through node's compat layer (req/res), as connect-node's adapter does.
    handler: (req, res) => {
      if ("stream" in req) streams.push(req.stream);
      res.statusCode = 200;
      res.end("ok");
    },
  });
  const address = await server.listen("127.0.0.1", 0);
  baseUrl = `http://127.0.0.1:${address.port}`;
});

afterEach(async () => {
  await server.close(1000);
});

/** One unary call; resolves with the grpc-status trailer (or header, for trailers-only answers). */
function call(body: Uint8Array, options: { reset?: boolean; path?: string } = {}): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const session = connect(baseUrl);
    session.on("error", reject);
    const req = session.request({ ":method": "POST", ":path": options.path ?? PATH, "content-type": "application/grpc", te: "trailers" });
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

describe("a closed HTTP/2 stream keeps nothing of its call", () => {
  it.each([
    ["an answered call", new Uint8Array([1, 2, 3]), {}, "0"],
    ["a trailers-only error", new Uint8Array([0xff]), {}, "3"],
    ["a call the client cancels", new Uint8Array([1, 2, 3]), { reset: true }, undefined],
  ] as const)("lean path: %s", async (_name, body, options, status) => {
    expect(await call(body, options)).toBe(status);
    expect(lean).toHaveLength(1);
    expect(streams).toHaveLength(0);
    const stream = lean[0]!;
    expect(stream.closed).toBe(true);
    expect(stream.context).toBeUndefined();
    expect(stream.pending).toBeUndefined();
  });

  it("compat path: an answered request", async () => {
    expect(await call(new Uint8Array([1]), { path: "/other" })).toBeUndefined();
    expect(lean).toHaveLength(0);
    expect(streams).toHaveLength(1);
    const stream = streams[0]!;
    await closed(stream);
    expect(stream.eventNames()).toEqual(["error"]);
    expect(stream.listenerCount("error")).toBe(1);
    // The guard stays: a late error must not go uncaught.
    expect(() => stream.emit("error", new Error("late"))).not.toThrow();
  });
});
