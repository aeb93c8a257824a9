// What keyward's HTTP/2 server leaves on a lean-path stream once it is
// closed: nothing of its call (no call state holding the body, no queued
// answer), whether it was answered, failed or cancelled. Requests for other
// paths never reach the lean handler.
import { connect } from "node:http2";
import type { H2Stream } from "../../src/transport/h2/connection.js";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { invalidArgument } from "../../src/core/errors.js";
import { createGrpcUnaryHandler, frame } from "../../src/transport/grpc-unary.js";
import { createKeywardServer, type KeywardServer } from "../../src/transport/server.js";

const PATH = "/test.v1.Echo/Echo";
let server: KeywardServer;
let baseUrl: string;
let lean: H2Stream[];
let other: string[];

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
  lean = [];
  other = [];
  server = createKeywardServer({
    unary: {
      accepts: (headers) => unary.accepts(headers),
      serve: (stream) => {
        lean.push(stream);
        unary.serve(stream);
      },
    },
    handler: (req, res) => {
      other.push(req.url ?? "");
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

describe("a closed HTTP/2 stream keeps nothing of its call", () => {
  it.each([
    ["an answered call", new Uint8Array([1, 2, 3]), {}, "0"],
    ["a trailers-only error", new Uint8Array([0xff]), {}, "3"],
    ["a call the client cancels", new Uint8Array([1, 2, 3]), { reset: true }, undefined],
  ] as const)("lean path: %s", async (_name, body, options, status) => {
    expect(await call(body, options)).toBe(status);
    expect(lean).toHaveLength(1);
    expect(other).toHaveLength(0);
    const stream = lean[0]!;
    expect(stream.closed).toBe(true);
    expect(stream.context).toBeUndefined();
    expect(stream.pending).toBeUndefined();
  });

  it("other paths: answered by the HTTP handler, never by the lean one", async () => {
    expect(await call(new Uint8Array([1]), { path: "/other" })).toBeUndefined();
    expect(lean).toHaveLength(0);
    expect(other).toEqual(["/other"]);
  });
});
