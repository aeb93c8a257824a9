// Hostile and malformed input against a real server: property-based calls over
// Verify, Check, Issue and SetSetting, a raw-bytes fuzzer on the port, and
// protocol abuse (idle connections, rapid reset, slow clients, huge headers).
// Every case must end in a normal answer or INVALID_ARGUMENT-class error, and
// the server must keep serving others. `npm run fuzz` runs it longer
// (KEYWARD_FUZZ_RUNS).
import { connect as http2Connect } from "node:http2";
import { connect as netConnect, type Socket } from "node:net";
import { ConnectError } from "@connectrpc/connect";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Authorization } from "../../src/gen/envoy/service/auth/v3/external_auth_pb.js";
import { KeyService, VerifyCode } from "../../src/gen/keyward/v1/keys_pb.js";
import { SettingsService } from "../../src/gen/keyward/v1/settings_pb.js";
import { Code, connectClients, grpcJsClients } from "../helpers/clients.js";
import { adminHeaders, startKeyward, type RunningKeyward } from "../helpers/server.js";

const RUNS = Number(process.env.KEYWARD_FUZZ_RUNS ?? 150);
// Codes a caller may legitimately get for bad input; anything else (INTERNAL, UNKNOWN) is a defect.
const INPUT_CODES = new Set([Code.InvalidArgument, Code.NotFound, Code.ResourceExhausted, Code.Unauthenticated, Code.PermissionDenied, Code.FailedPrecondition]);

let kw: RunningKeyward;
let key: string;
const grpc = grpcJsClients();

beforeAll(async () => {
  kw = await startKeyward({ env: { KEYWARD_MAX_MESSAGE_BYTES: "65536" } });
  const issued = await connectClients("connect-json")
    .client(KeyService, kw.baseUrl)
    .issue({ tenantId: "acme", scopes: ["read"] }, { headers: adminHeaders });
  key = issued.key;
});
afterAll(async () => {
  grpc.close();
  await kw.stop();
});

async function stillServing(): Promise<void> {
  const res = await connectClients("connect-grpc").client(KeyService, kw.baseUrl).verify({ key, requiredScopes: ["read"] });
  expect(res.code).toBe(VerifyCode.VALID);
}

async function outcome(call: Promise<unknown>): Promise<"ok" | Code> {
  try {
    await call;
    return "ok";
  } catch (e) {
    if (e instanceof ConnectError) return e.code;
    throw e;
  }
}

const anyText = fc.oneof(
  fc.string({ unit: "binary", maxLength: 80 }),
  fc.string({ unit: "grapheme", maxLength: 20 }),
  fc.constantFrom("", "\0", "kw_", "sk_live_", "x".repeat(600), "\ud800", "kw_" + "A".repeat(38)),
);

describe("property-based input", () => {
  it("Verify answers NOT_FOUND-or-valid, or INVALID_ARGUMENT, for any key and scopes", async () => {
    const clients = [grpc.client(KeyService, kw.baseUrl), connectClients("connect-json").client(KeyService, kw.baseUrl)];
    await fc.assert(
      fc.asyncProperty(anyText, fc.array(anyText, { maxLength: 70 }), fc.nat(1), async (k, scopes, which) => {
        const result = await outcome(clients[which]!.verify({ key: k, requiredScopes: scopes }).then((r) => {
          expect([VerifyCode.NOT_FOUND, VerifyCode.INSUFFICIENT_SCOPE, VerifyCode.VALID]).toContain(r.code);
        }));
        if (result !== "ok") expect(result).toBe(Code.InvalidArgument);
      }),
      { numRuns: RUNS },
    );
  });

  it("Check always answers with a CheckResponse for any headers and context extensions", async () => {
    const authz = grpc.client(Authorization, kw.baseUrl);
    const headerName = fc.oneof(fc.constantFrom("x-api-key", "authorization", "x-keyward-tenant-id", ":path"), fc.string({ maxLength: 12 }));
    await fc.assert(
      fc.asyncProperty(fc.dictionary(headerName, anyText, { maxKeys: 8 }), fc.dictionary(fc.constantFrom("required_scopes", "x"), anyText, { maxKeys: 2 }), async (headers, contextExtensions) => {
        const res = await authz.check({ attributes: { request: { http: { method: "GET", path: "/", headers } }, contextExtensions } });
        expect([0, 7, 8, 16]).toContain(res.status?.code ?? 0);
        const body = res.httpResponse.case === "deniedResponse" ? res.httpResponse.value.body : "";
        expect(body).not.toContain(key);
      }),
      { numRuns: RUNS },
    );
  });

  it("Issue and SetSetting reject bad fields with input errors, never internal ones", async () => {
    const keys = grpc.client(KeyService, kw.baseUrl);
    const settings = grpc.client(SettingsService, kw.baseUrl);
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          tenantId: anyText,
          name: anyText,
          nameAr: anyText,
          scopes: fc.array(anyText, { maxLength: 5 }),
          rateLimit: fc.nat(),
          rateLimitWindowSeconds: fc.nat(),
          metadata: fc.dictionary(anyText, anyText, { maxKeys: 3 }),
          prefix: anyText,
        }),
        fc.record({ tenantId: anyText, key: anyText, value: anyText, valueType: fc.integer({ min: -1, max: 7 }), description: anyText }),
        async (issue, setting) => {
          const a = await outcome(keys.issue(issue, { headers: adminHeaders }));
          if (a !== "ok") expect(INPUT_CODES.has(a), `Issue gave ${Code[a]}`).toBe(true);
          const b = await outcome(settings.setSetting({ setting }, { headers: adminHeaders }));
          if (b !== "ok") expect(INPUT_CODES.has(b), `SetSetting gave ${Code[b]}`).toBe(true);
        },
      ),
      { numRuns: RUNS },
    );
    await stillServing();
  });
});

function rawSend(bytes: Uint8Array, waitMs = 50): Promise<void> {
  return new Promise((resolve) => {
    const socket = netConnect(kw.port, "127.0.0.1");
    socket.on("error", () => {});
    socket.on("connect", () => socket.write(bytes));
    socket.on("data", () => {});
    const done = () => {
      socket.destroy();
      resolve();
    };
    socket.on("close", done);
    setTimeout(done, waitMs);
  });
}

describe("raw bytes on the port", () => {
  const preface = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
  it("survives random bytes, random HTTP/2 frames and random HTTP/1 requests", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.uint8Array({ maxLength: 512 }),
          fc.uint8Array({ maxLength: 512 }).map((b) => Buffer.concat([preface, b])),
          fc.string({ maxLength: 300 }).map((s) => Buffer.from(`POST /keyward.v1.KeyService/Verify HTTP/1.1\r\n${s}\r\n\r\n`)),
        ),
        async (bytes) => {
          await rawSend(bytes, 20);
        },
      ),
      { numRuns: RUNS },
    );
    await stillServing();
  });
});

describe("protocol abuse", () => {
  it("keeps serving while hundreds of connections sit idle or half-sent", async () => {
    const sockets: Socket[] = [];
    for (let i = 0; i < 300; i++) {
      const s = netConnect(kw.port, "127.0.0.1");
      s.on("error", () => {});
      // A third say nothing, a third start HTTP/1.1 headers and stall, a third stall after the h2 preface.
      if (i % 3 === 1) s.write("POST /keyward.v1.KeyService/Verify HTTP/1.1\r\nHost: x\r\n");
      if (i % 3 === 2) s.write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
      sockets.push(s);
    }
    await new Promise((r) => setTimeout(r, 200));
    await stillServing();
    for (const s of sockets) s.destroy();
  });

  it("survives an HTTP/2 rapid-reset flood", async () => {
    const session = http2Connect(kw.baseUrl);
    session.on("error", () => {});
    for (let i = 0; i < 2000; i++) {
      const req = session.request({ ":method": "POST", ":path": "/keyward.v1.KeyService/Verify", "content-type": "application/grpc" });
      req.on("error", () => {});
      req.close();
    }
    await new Promise((r) => setTimeout(r, 300));
    session.destroy();
    await stillServing();
  });

  it("refuses oversized headers and messages with a clear status", async () => {
    const head = await new Promise<string>((resolve) => {
      const socket = netConnect(kw.port, "127.0.0.1");
      let answer = "";
      socket.on("data", (d) => (answer += String(d)));
      socket.on("close", () => resolve(answer));
      socket.on("error", () => resolve(answer));
      socket.write(`POST /keyward.v1.KeyService/Verify HTTP/1.1\r\nHost: x\r\nx-big: ${"a".repeat(64 * 1024)}\r\n\r\n`);
    });
    expect(head).toMatch(/^HTTP\/1\.1 431 /);
    const big = await fetch(`${kw.baseUrl}/keyward.v1.KeyService/Verify`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ key, requiredScopes: Array.from({ length: 10_000 }, () => "scope") }),
    });
    expect(big.status).toBe(429);
    expect(((await big.json()) as { code: string }).code).toBe("resource_exhausted");
    await stillServing();
  });

  it("rejects invalid UTF-8 in binary messages on both paths", async () => {
    const bytes = Buffer.from([0x0a, 0x03, 0x61, 0xc3, 0x28]);
    const frame = Buffer.concat([Buffer.from([0, 0, 0, 0, bytes.length]), bytes]);
    const session = http2Connect(kw.baseUrl);
    const status = (path: string) =>
      new Promise<string>((resolve, reject) => {
        const req = session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers", ...adminHeaders });
        let code = "";
        let message = "";
        const read = (h: Record<string, unknown>) => {
          code = String(h["grpc-status"] ?? code);
          message = decodeURIComponent(String(h["grpc-message"] ?? message));
        };
        req.on("response", read);
        req.on("trailers", read);
        req.on("data", () => {});
        req.on("end", () => resolve(`${code} ${message}`));
        req.on("error", reject);
        req.end(frame);
      });
    // Verify (lean path) says INVALID_ARGUMENT; GetKey (connect-node) answers with gRPC's own
    // error for an unparsable request, INTERNAL "parse binary: ...", as grpc-go does.
    expect(await status("/keyward.v1.KeyService/Verify")).toBe(`${Code.InvalidArgument} request contains invalid UTF-8`);
    expect(await status("/keyward.v1.KeyService/GetKey")).toMatch(/^13 parse binary: .*UTF-8/i);
    session.close();
    await stillServing();
  });
});
