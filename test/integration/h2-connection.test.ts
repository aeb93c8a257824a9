// keyward's HTTP/2 connection on a real socket: raw frames for the protocol
// rules (connection and stream errors, padding, limits, rapid reset), and
// node:http2's client for flow control, table size and header limits, on the
// lean path and through the bridge to node:http2.
import { connect as http2Connect, constants, type ClientHttp2Session, type IncomingHttpHeaders } from "node:http2";
import { connect as netConnect, type Socket } from "node:net";
import fc from "fast-check";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createGrpcUnaryHandler, frame } from "../../src/transport/grpc-unary.js";
import { H2Code } from "../../src/transport/h2/connection.js";
import { encodeHeaderBlock, HpackDecoder } from "../../src/transport/h2/hpack.js";
import { createKeywardServer, type KeywardServer } from "../../src/transport/server.js";

const ECHO = "/test.v1.Echo/Echo";
const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
const [DATA, HEADERS, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION] = [0, 1, 3, 4, 5, 6, 7, 8, 9];

let server: KeywardServer;
let port: number;
// Errors a handler or the connection code threw (the server closes that connection and goes on): none expected.
let internalErrors: unknown[] = [];

async function start(maxConcurrentStreams?: number, maxHeldBodyBytes?: number): Promise<void> {
  const unary = createGrpcUnaryHandler({
    maxMessageBytes: 1 << 20,
    methods: [{ path: ECHO, decode: (p) => p, handle: (r) => r, encode: (r) => r as Uint8Array }],
  });
  server = createKeywardServer({
    unary,
    maxConcurrentStreams,
    maxHeldBodyBytes,
    onError: (error) => internalErrors.push(error),
    // The bridge's side: a body of the size asked for, or a reset.
    handler: (req, res) => {
      const url = new URL(req.url ?? "/", "http://x");
      if (url.pathname === "/reset") return void res.destroy();
      const size = Number(url.searchParams.get("size") ?? 0);
      res.statusCode = 200;
      res.setHeader("content-type", "application/octet-stream");
      res.end(Buffer.alloc(size, 7));
    },
  });
  port = (await server.listen("127.0.0.1", 0)).port;
}

beforeEach(() => {
  internalErrors = [];
  return start();
});
afterEach(async () => {
  await server.close(500);
  expect(internalErrors).toEqual([]);
});

function frameBytes(type: number, flags: number, id: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(id, 5);
  return Buffer.concat([head, payload]);
}

interface Frame {
  type: number;
  flags: number;
  id: number;
  payload: Buffer;
}

/** A client speaking raw frames: what it receives is parsed and kept in order. */
class RawClient {
  readonly frames: Frame[] = [];
  readonly socket: Socket;
  readonly closed: Promise<void>;
  private input = Buffer.alloc(0);
  private waiters: (() => void)[] = [];

  constructor(settings = true) {
    this.socket = netConnect(port, "127.0.0.1");
    this.socket.on("error", () => {});
    this.closed = new Promise((resolve) => this.socket.on("close", () => resolve()));
    this.socket.on("data", (chunk: Buffer) => {
      this.input = Buffer.concat([this.input, chunk]);
      while (this.input.length >= 9) {
        const length = this.input.readUIntBE(0, 3);
        if (this.input.length < 9 + length) break;
        this.frames.push({ type: this.input[3]!, flags: this.input[4]!, id: this.input.readUInt32BE(5), payload: this.input.subarray(9, 9 + length) });
        this.input = this.input.subarray(9 + length);
      }
      for (const w of this.waiters.splice(0)) w();
    });
    this.socket.write(PREFACE);
    if (settings) this.socket.write(frameBytes(SETTINGS, 0, 0));
  }

  send(...bytes: Buffer[]): void {
    this.socket.write(Buffer.concat(bytes));
  }

  async waitFor(match: (f: Frame) => boolean): Promise<Frame> {
    const deadline = Date.now() + 3000;
    for (;;) {
      const found = this.frames.find(match);
      if (found) return found;
      if (Date.now() > deadline) throw new Error(`frame not received; got ${JSON.stringify(this.frames.map((f) => [f.type, f.flags, f.id]))}`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 50);
      });
    }
  }

  goaway(): Promise<number> {
    return this.waitFor((f) => f.type === GOAWAY).then((f) => f.payload.readUInt32BE(4));
  }

  reset(id: number): Promise<number> {
    return this.waitFor((f) => f.type === RST_STREAM && f.id === id).then((f) => f.payload.readUInt32BE(0));
  }

  /** The fields of every header block received on a stream, in order. */
  headerBlocks(id: number): [string, string][][] {
    const decoder = new HpackDecoder();
    return this.frames
      .filter((f) => f.type === HEADERS)
      .map((f) => {
        const fields: [string, string][] = [];
        decoder.decode(f.payload, 0, f.payload.length, { field: (n, v) => fields.push([n, v]) }, 1 << 20);
        return f.id === id ? fields : undefined;
      })
      .filter((b): b is [string, string][] => b !== undefined);
  }

  close(): void {
    this.socket.destroy();
  }
}

const grpcRequest = (extra: [string, string][] = []) =>
  encodeHeaderBlock([
    [":method", "POST"],
    [":scheme", "http"],
    [":path", ECHO],
    [":authority", "test"],
    ["content-type", "application/grpc"],
    ["te", "trailers"],
    ...extra,
  ]);

describe("raw frames", () => {
  it("opens with SETTINGS and a connection WINDOW_UPDATE, acknowledges SETTINGS and answers PING", async () => {
    const c = new RawClient();
    try {
      const settings = await c.waitFor((f) => f.type === SETTINGS && f.flags === 0);
      expect(settings.payload.length % 6).toBe(0);
      await c.waitFor((f) => f.type === WINDOW_UPDATE && f.id === 0);
      await c.waitFor((f) => f.type === SETTINGS && f.flags === 1);
      c.send(frameBytes(PING, 0, 0, Buffer.from("12345678")));
      const pong = await c.waitFor((f) => f.type === PING);
      expect(pong.flags).toBe(1);
      expect(String(pong.payload)).toBe("12345678");
    } finally {
      c.close();
    }
  });

  it("answers a call whose HEADERS and DATA are padded, and whose header block spans CONTINUATION frames", async () => {
    const c = new RawClient();
    try {
      const block = grpcRequest();
      const padded = (payload: Buffer, pad: number) => Buffer.concat([Buffer.from([pad]), payload, Buffer.alloc(pad)]);
      c.send(
        frameBytes(HEADERS, 0x8, 1, padded(block.subarray(0, 10), 3)),
        frameBytes(CONTINUATION, 0x4, 1, block.subarray(10)),
        frameBytes(DATA, 0x8 | 0x1, 1, padded(frame(Buffer.from("hello")), 200)),
      );
      const trailers = await c.waitFor((f) => f.type === HEADERS && f.id === 1 && (f.flags & 1) === 1);
      expect(trailers).toBeDefined();
      const data = c.frames.find((f) => f.type === DATA && f.id === 1)!;
      expect(data.payload.subarray(5).toString()).toBe("hello");
      const [head, tail] = c.headerBlocks(1);
      expect(head).toEqual([
        [":status", "200"],
        ["content-type", "application/grpc"],
      ]);
      expect(tail).toEqual([["grpc-status", "0"]]);
    } finally {
      c.close();
    }
  });

  it.each([
    ["a frame larger than SETTINGS_MAX_FRAME_SIZE", () => [frameBytes(DATA, 0, 1, Buffer.alloc(16_385))], H2Code.FRAME_SIZE_ERROR],
    ["HEADERS on an even stream id", () => [frameBytes(HEADERS, 0x5, 2, grpcRequest())], H2Code.PROTOCOL_ERROR],
    ["a header block HPACK cannot decode", () => [frameBytes(HEADERS, 0x5, 1, Buffer.from([0x80]))], H2Code.COMPRESSION_ERROR],
    ["a header block interrupted by another frame", () => [frameBytes(HEADERS, 0, 1, grpcRequest()), frameBytes(PING, 0, 0, Buffer.alloc(8))], H2Code.PROTOCOL_ERROR],
    ["DATA on a stream never opened", () => [frameBytes(DATA, 0, 5, Buffer.alloc(4))], H2Code.PROTOCOL_ERROR],
    ["a connection WINDOW_UPDATE of 0", () => [frameBytes(WINDOW_UPDATE, 0, 0, Buffer.alloc(4))], H2Code.PROTOCOL_ERROR],
    ["PUSH_PROMISE from the client", () => [frameBytes(PUSH_PROMISE, 0x4, 1, Buffer.alloc(4))], H2Code.PROTOCOL_ERROR],
    ["a PING that is not 8 bytes", () => [frameBytes(PING, 0, 0, Buffer.alloc(7))], H2Code.FRAME_SIZE_ERROR],
    [
      "a header block past 64 KiB (CONTINUATION flood)",
      () => [frameBytes(HEADERS, 0, 1, grpcRequest()), ...Array.from({ length: 5 }, () => frameBytes(CONTINUATION, 0, 1, Buffer.alloc(16_000, 0x82)))],
      H2Code.ENHANCE_YOUR_CALM,
    ],
    ["a connection window overflow", () => [frameBytes(WINDOW_UPDATE, 0, 0, Buffer.from([0x7f, 0xff, 0xff, 0xff]))], H2Code.FLOW_CONTROL_ERROR],
  ])("closes the connection with GOAWAY on %s", async (_name, frames, code) => {
    const c = new RawClient();
    try {
      c.send(...frames());
      expect(await c.goaway()).toBe(code);
      await c.closed;
    } finally {
      c.close();
    }
  });

  it("requires SETTINGS right after the preface", async () => {
    const c = new RawClient(false);
    try {
      c.send(frameBytes(PING, 0, 0, Buffer.alloc(8)));
      expect(await c.goaway()).toBe(H2Code.PROTOCOL_ERROR);
    } finally {
      c.close();
    }
  });

  it.each([
    ["an uppercase field name", [["X-Upper", "1"]]],
    ["a connection-specific field", [["connection", "keep-alive"]]],
    ["a field value with a line break", [["x-bad", "a\r\nb"]]],
    ["an unknown pseudo-header", [[":protocol", "websocket"]]],
  ] as [string, [string, string][]][])("resets a request with %s and keeps the connection", async (_name, extra) => {
    const c = new RawClient();
    try {
      c.send(frameBytes(HEADERS, 0x5, 1, grpcRequest(extra)));
      expect(await c.reset(1)).toBe(H2Code.PROTOCOL_ERROR);
      c.send(frameBytes(HEADERS, 0x4, 3, grpcRequest()), frameBytes(DATA, 0x1, 3, frame(Buffer.from("ok"))));
      await c.waitFor((f) => f.type === HEADERS && f.id === 3 && (f.flags & 1) === 1);
      expect(c.frames.some((f) => f.type === GOAWAY)).toBe(false);
    } finally {
      c.close();
    }
  });

  it("refuses streams beyond SETTINGS_MAX_CONCURRENT_STREAMS", async () => {
    await server.close(100);
    await start(2);
    const c = new RawClient();
    try {
      for (const id of [1, 3, 5]) c.send(frameBytes(HEADERS, 0x4, id, grpcRequest()));
      expect(await c.reset(5)).toBe(H2Code.REFUSED_STREAM);
      // The two open ones still complete.
      c.send(frameBytes(DATA, 0x1, 1, frame(Buffer.from("a"))), frameBytes(DATA, 0x1, 3, frame(Buffer.from("b"))));
      await c.waitFor((f) => f.type === HEADERS && f.id === 3 && (f.flags & 1) === 1);
      await c.waitFor((f) => f.type === HEADERS && f.id === 1 && (f.flags & 1) === 1);
    } finally {
      c.close();
    }
  });

  it("answers RESOURCE_EXHAUSTED to a call whose body would pass what the connection may hold, and serves the others", async () => {
    await server.close(100);
    await start(undefined, 100_000);
    const c = new RawClient();
    try {
      const step = 15_000;
      const message = frame(Buffer.alloc(4 * 15_000));
      c.send(frameBytes(HEADERS, 0x4, 1, grpcRequest()), frameBytes(HEADERS, 0x4, 3, grpcRequest()));
      // 60 KB of stream 1, then 60 KB of stream 3: the second passes the 100 KB budget.
      for (const id of [1, 3]) for (let at = 0; at < message.length; at += step) c.send(frameBytes(DATA, 0, id, message.subarray(at, at + step)));
      await c.waitFor((f) => f.type === HEADERS && f.id === 3);
      expect(c.headerBlocks(3)[0]).toEqual(expect.arrayContaining([["grpc-status", "8"]]));
      c.send(frameBytes(DATA, 0x1, 1));
      await c.waitFor((f) => f.type === HEADERS && f.id === 1 && (f.flags & 1) === 1);
      expect(c.headerBlocks(1).at(-1)).toEqual([["grpc-status", "0"]]);
    } finally {
      c.close();
    }
  });

  it("ends a rapid-reset flood with GOAWAY ENHANCE_YOUR_CALM", async () => {
    const c = new RawClient();
    try {
      const block = grpcRequest();
      const burst: Buffer[] = [];
      for (let id = 1; id < 2 * 1200; id += 2) burst.push(frameBytes(HEADERS, 0x4, id, block), frameBytes(RST_STREAM, 0, id, Buffer.from([0, 0, 0, 8])));
      c.send(...burst);
      expect(await c.goaway()).toBe(H2Code.ENHANCE_YOUR_CALM);
    } finally {
      c.close();
    }
  });

  it("answers a gRPC call whose header list is too large with RESOURCE_EXHAUSTED, and other requests with 431", async () => {
    const c = new RawClient();
    try {
      const big: [string, string] = ["x-big", "a".repeat(15_000)];
      const half = grpcRequest([big, ["x-big2", "b".repeat(3_000)]]);
      c.send(frameBytes(HEADERS, 0x0, 1, half.subarray(0, 16_000)), frameBytes(CONTINUATION, 0x4, 1, half.subarray(16_000)));
      await c.waitFor((f) => f.type === HEADERS && f.id === 1);
      expect(c.headerBlocks(1)[0]).toEqual(expect.arrayContaining([["grpc-status", "8"]]));
      const plain = encodeHeaderBlock([
        [":method", "GET"],
        [":scheme", "http"],
        [":path", "/healthz"],
        big,
        ["x-big2", "b".repeat(3_000)],
      ]);
      c.send(frameBytes(HEADERS, 0x1, 3, plain.subarray(0, 16_000)), frameBytes(CONTINUATION, 0x4, 3, plain.subarray(16_000)));
      await c.waitFor((f) => f.type === HEADERS && f.id === 3);
      expect(c.headerBlocks(3)[0]).toEqual(expect.arrayContaining([[":status", "431"]]));
    } finally {
      c.close();
    }
  });
});

describe("structured frame fuzzing", () => {
  // Random sequences of well-framed frames after a valid preface and SETTINGS, so the parser's
  // deeper states (open streams, CONTINUATION, flow control) are reached, unlike random bytes.
  // Whatever they do, the process must not throw and a new client must still be answered.
  const RUNS = Number(process.env.KEYWARD_FUZZ_RUNS ?? 1000);
  const anyFrame = fc.record({
    type: fc.integer({ min: 0, max: 10 }),
    flags: fc.constantFrom(0, 0x1, 0x4, 0x5, 0x8, 0x9, 0x20, 0x25, 0xff),
    id: fc.constantFrom(0, 1, 2, 3, 5, 7, 0x7fffffff),
    payload: fc.oneof(
      fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b)),
      fc.constant(grpcRequest()),
      fc.constant(frame(Buffer.from("hi"))),
      fc.constant(Buffer.from([0, 0, 0, 1])),
      fc.constant(Buffer.from([0, 4, 0, 0, 0, 0])),
    ),
  });

  it("survives random frame sequences and keeps answering other clients", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(anyFrame, { minLength: 1, maxLength: 12 }), async (frames) => {
        const c = new RawClient();
        try {
          c.send(...frames.map((f) => frameBytes(f.type, f.flags, f.id, f.payload)));
          await Promise.race([c.closed, new Promise((r) => setTimeout(r, 15))]);
        } finally {
          c.close();
        }
      }),
      { numRuns: RUNS },
    );
    const probe = new RawClient();
    try {
      probe.send(frameBytes(HEADERS, 0x4, 1, grpcRequest()), frameBytes(DATA, 0x1, 1, frame(Buffer.from("ok"))));
      await probe.waitFor((f) => f.type === HEADERS && f.id === 1 && (f.flags & 1) === 1);
      expect(probe.headerBlocks(1).at(-1)).toEqual([["grpc-status", "0"]]);
    } finally {
      probe.close();
    }
  });
});

function session(settings: Parameters<typeof http2Connect>[1] = {}): ClientHttp2Session {
  const s = http2Connect(`http://127.0.0.1:${port}`, settings);
  s.on("error", () => {});
  return s;
}

function request(s: ClientHttp2Session, headers: Record<string, string>, body?: Buffer) {
  return new Promise<{ headers: IncomingHttpHeaders; trailers: IncomingHttpHeaders; body: Buffer; rstCode: number | undefined }>((resolve) => {
    const req = s.request(headers);
    const chunks: Buffer[] = [];
    let responseHeaders: IncomingHttpHeaders = {};
    let trailers: IncomingHttpHeaders = {};
    req.on("response", (h) => (responseHeaders = h));
    req.on("trailers", (t) => (trailers = t));
    req.on("data", (d: Buffer) => chunks.push(d));
    req.on("error", () => {});
    req.on("close", () => resolve({ headers: responseHeaders, trailers, body: Buffer.concat(chunks), rstCode: req.rstCode }));
    req.end(body);
  });
}

const echoHeaders = { ":method": "POST", ":path": ECHO, "content-type": "application/grpc", te: "trailers" };

describe("flow control and limits with node:http2's client", () => {
  it("sends a large answer within a small client window, and takes a body larger than the stream window", async () => {
    // 10-byte stream windows: every DATA frame waits on the client's WINDOW_UPDATE.
    const s = session({ settings: { initialWindowSize: 10 } });
    try {
      const message = Buffer.alloc(200_000, 3);
      const res = await request(s, echoHeaders, frame(message));
      expect(res.trailers["grpc-status"]).toBe("0");
      expect(res.body.equals(frame(message))).toBe(true);
    } finally {
      s.close();
    }
  });

  it("opens its answers with a table size update when the client shrinks its HPACK table", async () => {
    const s = session({ settings: { headerTableSize: 0 } });
    try {
      for (let i = 0; i < 3; i++) {
        const res = await request(s, echoHeaders, frame(Buffer.from("x")));
        expect(res.trailers["grpc-status"]).toBe("0");
      }
    } finally {
      s.close();
    }
  });

  it("rejects a body longer than its content-length", async () => {
    const s = session();
    try {
      const res = await request(s, { ...echoHeaders, "content-length": "3" }, frame(Buffer.from("toolong")));
      expect(res.rstCode).toBe(constants.NGHTTP2_PROTOCOL_ERROR);
    } finally {
      s.close();
    }
  });
});

describe("the bridge to node:http2", () => {
  it("passes on a large answer within a small client window", async () => {
    const s = session({ settings: { initialWindowSize: 1000 } });
    try {
      const res = await request(s, { ":method": "GET", ":path": "/big?size=300000" });
      expect(res.headers[":status"]).toBe(200);
      expect(res.body.length).toBe(300_000);
      expect(res.body.every((b) => b === 7)).toBe(true);
    } finally {
      s.close();
    }
  });

  it("passes a reset inside on to the client", async () => {
    const s = session();
    try {
      const res = await request(s, { ":method": "GET", ":path": "/reset" });
      expect(res.rstCode).not.toBe(constants.NGHTTP2_NO_ERROR);
      // The connection stays usable.
      expect((await request(s, { ":method": "GET", ":path": "/small?size=5" })).body.length).toBe(5);
    } finally {
      s.close();
    }
  });
});
