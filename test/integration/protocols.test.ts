// The wire protocols on the one listening address: curl-style Connect JSON,
// gRPC-Web, Connect over h2c, and the lean gRPC path's protocol duties checked
// with a raw HTTP/2 client (framing, compression, limits, deadlines, trailers).
import { connect as http2Connect, type ClientHttp2Session, type IncomingHttpHeaders } from "node:http2";
import { gzipSync } from "node:zlib";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ServerReflection, ServerReflectionRequestSchema } from "../../src/gen/grpc/reflection/v1/reflection_pb.js";
import {
  KeyService,
  VerifyCode,
  VerifyRequestSchema,
  VerifyResponseSchema,
} from "../../src/gen/keyward/v1/keys_pb.js";
import { connectClients, connectTransport, grpcJsClients, rpcError } from "../helpers/clients.js";
import { adminHeaders, startKeyward, type RunningKeyward } from "../helpers/server.js";

let kw: RunningKeyward;
let key: string;

beforeAll(async () => {
  kw = await startKeyward({ env: { KEYWARD_MAX_MESSAGE_BYTES: "4096" } });
  const issued = await connectClients("connect-json").client(KeyService, kw.baseUrl).issue(
    { tenantId: "acme", name: "protocols", scopes: ["read"] },
    { headers: adminHeaders },
  );
  key = issued.key;
});
afterAll(() => kw.stop());

describe("Connect JSON over HTTP/1.1 (curl)", () => {
  it("verifies with a plain JSON POST", async () => {
    const res = await fetch(`${kw.baseUrl}/keyward.v1.KeyService/Verify`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ key, requiredScopes: ["read"] }),
    });
    expect(res.status).toBe(200);
    const body = await res.json();
    expect(body).toMatchObject({ valid: true, code: "VERIFY_CODE_VALID", apiKey: { tenantId: "acme", name: "protocols" } });
    expect(JSON.stringify(body)).not.toContain(key);
  });

  it("accepts snake_case field names, as curl users type them", async () => {
    const res = await fetch(`${kw.baseUrl}/keyward.v1.KeyService/Verify`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ key, required_scopes: ["write"] }),
    });
    expect(await res.json()).toMatchObject({ valid: false, code: "VERIFY_CODE_INSUFFICIENT_SCOPE" });
  });

  it("maps errors to Connect's JSON error shape and HTTP status", async () => {
    const res = await fetch(`${kw.baseUrl}/keyward.v1.KeyService/Issue`, {
      method: "POST",
      headers: { "content-type": "application/json", ...adminHeaders },
      body: JSON.stringify({ tenantId: "acme", expiresAt: "9999-12-31T23:59:59Z", prefix: "NO" }),
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ code: "invalid_argument", message: expect.stringMatching(/prefix/) });
    const unauth = await fetch(`${kw.baseUrl}/keyward.v1.KeyService/GetKey`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ id: "key_x" }),
    });
    expect(unauth.status).toBe(401);
    const malformed = await fetch(`${kw.baseUrl}/keyward.v1.KeyService/Verify`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{not json",
    });
    expect(malformed.status).toBe(400);
    expect(((await malformed.json()) as { code: string }).code).toBe("invalid_argument");
    const badEnum = await fetch(`${kw.baseUrl}/keyward.v1.SettingsService/SetSetting`, {
      method: "POST",
      headers: { "content-type": "application/json", ...adminHeaders },
      body: JSON.stringify({ setting: { tenantId: "acme", key: "k", value: "v", valueType: "SETTING_TYPE_NOPE" } }),
    });
    expect(badEnum.status).toBe(400);
  });
});

describe("every client protocol reaches Verify", () => {
  for (const kind of ["connect-grpc", "connect-json", "connect-proto-h2", "grpc-web"] as const) {
    it(kind, async () => {
      const client = createClient(KeyService, connectTransport(kind, kw.baseUrl));
      const res = await client.verify({ key, requiredScopes: ["read"] });
      expect(res.code).toBe(VerifyCode.VALID);
    });
  }

  it("grpc-js with a deadline and gzip-compressed messages", async () => {
    const clients = grpcJsClients();
    try {
      const client = clients.client(KeyService, kw.baseUrl);
      const res = await (client.verify as (r: object, o: object) => Promise<{ code: VerifyCode }>)(
        { key, requiredScopes: ["read"] },
        { timeoutMs: 2000 },
      );
      expect(res.code).toBe(VerifyCode.VALID);
    } finally {
      clients.close();
    }
  });

  it("error messages reach grpc-js intact (no stray percent-escapes)", async () => {
    const clients = grpcJsClients();
    try {
      const client = clients.client(KeyService, kw.baseUrl);
      const error = await rpcError(client.getKey({ id: "key_x" }));
      expect(error.rawMessage).toBe("missing credential: send 'authorization: Bearer <admin token or key>'");
      const listed = await rpcError(client.listKeys({ tenantId: "acme", pageToken: "bad token" }, { headers: adminHeaders }));
      expect(listed.rawMessage).toBe("page_token is invalid; pass the next_page_token of the previous page unchanged");
    } finally {
      clients.close();
    }
  });

  it("lists and describes services through reflection over a real HTTP/2 stream", async () => {
    const client = createClient(ServerReflection, connectTransport("connect-grpc", kw.baseUrl));
    async function* requests() {
      yield create(ServerReflectionRequestSchema, { messageRequest: { case: "listServices", value: "" } });
      yield create(ServerReflectionRequestSchema, { messageRequest: { case: "fileContainingSymbol", value: "keyward.v1.KeyService" } });
    }
    const answers = [];
    for await (const answer of client.serverReflectionInfo(requests())) answers.push(answer);
    expect(answers).toHaveLength(2);
    const list = answers[0]!.messageResponse;
    expect(list.case).toBe("listServicesResponse");
    const names = list.case === "listServicesResponse" ? list.value.service.map((s) => s.name) : [];
    expect(names).toEqual(expect.arrayContaining(["keyward.v1.KeyService", "keyward.v1.SettingsService", "grpc.reflection.v1.ServerReflection"]));
    expect(answers[1]!.messageResponse.case).toBe("fileDescriptorResponse");
  });
});

interface RawResult {
  headers: IncomingHttpHeaders;
  trailers: IncomingHttpHeaders;
  body: Buffer;
}

function frame(payload: Uint8Array, compressed = false): Buffer {
  const out = Buffer.alloc(5 + payload.length);
  out[0] = compressed ? 1 : 0;
  out.writeUInt32BE(payload.length, 1);
  Buffer.from(payload).copy(out, 5);
  return out;
}

describe("lean gRPC path, raw HTTP/2", () => {
  let session: ClientHttp2Session;
  beforeAll(() => {
    session = http2Connect(kw.baseUrl);
  });
  afterAll(() => session.close());

  function call(body: Buffer, headers: Record<string, string> = {}): Promise<RawResult> {
    return new Promise((resolve, reject) => {
      const req = session.request({
        ":method": "POST",
        ":path": "/keyward.v1.KeyService/Verify",
        "content-type": "application/grpc",
        te: "trailers",
        ...headers,
      });
      let responseHeaders: IncomingHttpHeaders = {};
      let trailers: IncomingHttpHeaders = {};
      const chunks: Buffer[] = [];
      req.on("response", (h) => (responseHeaders = h));
      req.on("trailers", (t) => (trailers = t));
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => resolve({ headers: responseHeaders, trailers, body: Buffer.concat(chunks) }));
      req.on("error", reject);
      req.end(body);
    });
  }
  const status = (r: RawResult) => r.trailers["grpc-status"] ?? r.headers["grpc-status"];
  const message = (r: RawResult) => decodeURIComponent(String(r.trailers["grpc-message"] ?? r.headers["grpc-message"] ?? ""));
  const verifyBytes = () => toBinary(VerifyRequestSchema, create(VerifyRequestSchema, { key, requiredScopes: ["read"] }));

  it("answers with one framed message and grpc-status 0 in the trailers", async () => {
    const r = await call(frame(verifyBytes()));
    expect(r.headers[":status"]).toBe(200);
    expect(r.headers["content-type"]).toBe("application/grpc");
    expect(r.trailers["grpc-status"]).toBe("0");
    expect(r.body.readUInt32BE(1)).toBe(r.body.length - 5);
    expect(fromBinary(VerifyResponseSchema, r.body.subarray(5)).code).toBe(VerifyCode.VALID);
  });

  it("decompresses gzip requests", async () => {
    const r = await call(frame(gzipSync(verifyBytes()), true), { "grpc-encoding": "gzip" });
    expect(status(r)).toBe("0");
    expect(fromBinary(VerifyResponseSchema, r.body.subarray(5)).code).toBe(VerifyCode.VALID);
  });

  it("refuses unknown encodings with UNIMPLEMENTED and lists what it accepts", async () => {
    const r = await call(frame(verifyBytes(), true), { "grpc-encoding": "snappy" });
    expect(status(r)).toBe("12");
    expect(r.headers["grpc-accept-encoding"]).toContain("gzip");
  });

  it("rejects truncated, doubled, garbage and oversized messages", async () => {
    const good = frame(verifyBytes());
    expect(status(await call(good.subarray(0, good.length - 3)))).toBe("3");
    expect(message(await call(good.subarray(0, good.length - 3)))).toBe("truncated message frame");
    expect(message(await call(Buffer.concat([good, good])))).toBe("unary call received more than one request message");
    expect(status(await call(Buffer.alloc(0)))).toBe("3");
    const garbage = await call(frame(Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff])));
    expect(status(garbage)).toBe("3");
    expect(message(garbage)).toMatch(/not a valid keyward.v1.VerifyRequest/);
    const big = await call(frame(Buffer.alloc(10_000, 1)));
    expect(status(big)).toBe("8");
    const bomb = await call(frame(gzipSync(Buffer.alloc(1_000_000)), true), { "grpc-encoding": "gzip" });
    expect(status(bomb)).toBe("8");
  });

  it("rejects a malformed grpc-timeout", async () => {
    const r = await call(frame(verifyBytes()), { "grpc-timeout": "soon" });
    expect(status(r)).toBe("3");
  });

  it("keeps serving on the same connection after every error", async () => {
    const r = await call(frame(verifyBytes()));
    expect(status(r)).toBe("0");
  });
});
