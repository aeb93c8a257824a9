// Forward-auth (/v1/authz) driven as proxies drive it: nginx auth_request sends
// an HTTP/1.0 GET subrequest with the client's headers, x-original-uri and no
// body; Traefik sends x-forwarded-*; h2c works on the same port. Plus /healthz
// and /readyz, which share the plain HTTP router.
import { request as httpRequest, type IncomingHttpHeaders } from "node:http";
import { connect as http2Connect } from "node:http2";
import { connect as netConnect } from "node:net";
import type { Client } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KeyService } from "../../src/gen/keyward/v1/keys_pb.js";
import { connectClients, type ClientFactory } from "../helpers/clients.js";
import { adminHeaders, startKeyward, type RunningKeyward } from "../helpers/server.js";

interface PlainResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

function get(port: number, path: string, headers: Record<string, string> = {}, method = "GET"): Promise<PlainResponse> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: "127.0.0.1", port, path, method, headers, agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

/** The exact bytes nginx's proxy module writes for an auth_request subrequest (HTTP/1.0, no body). */
function nginxSubrequest(port: number, path: string, clientHeaders: [string, string][]): Promise<PlainResponse> {
  const lines = [
    `GET ${path} HTTP/1.0`,
    "X-Original-URI: /orders/42?expand=items",
    "X-Original-Method: GET",
    "Host: keyward",
    "Connection: close",
    ...clientHeaders.map(([k, v]) => `${k}: ${v}`),
  ];
  return new Promise((resolve, reject) => {
    const socket = netConnect(port, "127.0.0.1", () => socket.write(`${lines.join("\r\n")}\r\n\r\n`));
    let raw = "";
    socket.setEncoding("utf8");
    socket.on("data", (c: string) => (raw += c));
    socket.on("error", reject);
    socket.on("end", () => {
      const [head = "", body = ""] = raw.split("\r\n\r\n");
      const [statusLine = "", ...headerLines] = head.split("\r\n");
      const headers: IncomingHttpHeaders = {};
      for (const line of headerLines) {
        const i = line.indexOf(":");
        headers[line.slice(0, i).toLowerCase()] = line.slice(i + 1).trim();
      }
      resolve({ status: Number(statusLine.split(" ")[1]), headers, body });
    });
  });
}

function h2Get(port: number, path: string, headers: Record<string, string>): Promise<PlainResponse> {
  return new Promise((resolve, reject) => {
    const session = http2Connect(`http://127.0.0.1:${port}`);
    session.on("error", reject);
    const stream = session.request({ ":method": "GET", ":path": path, ...headers });
    let body = "";
    let responseHeaders: IncomingHttpHeaders = {};
    stream.setEncoding("utf8");
    stream.on("response", (h) => (responseHeaders = h));
    stream.on("data", (c: string) => (body += c));
    stream.on("end", () => {
      session.close();
      resolve({ status: Number(responseHeaders[":status"]), headers: responseHeaders, body });
    });
    stream.on("error", reject);
    stream.end();
  });
}

const keywardHeaders = (headers: IncomingHttpHeaders) =>
  Object.fromEntries(Object.entries(headers).filter(([name]) => name.startsWith("x-keyward-")));

describe("forward-auth /v1/authz", () => {
  let kw: RunningKeyward;
  let admin: ClientFactory;
  let keys: Client<typeof KeyService>;

  beforeAll(async () => {
    kw = await startKeyward();
    admin = connectClients("connect-json");
    keys = admin.client(KeyService, kw.baseUrl);
  });
  afterAll(async () => {
    admin?.close();
    await kw?.stop();
  });

  const issue = (extra: Record<string, unknown> = {}) =>
    keys.issue({ tenantId: "acme", name: "forward-auth", scopes: ["orders:read"], ...extra }, { headers: adminHeaders });

  it("answers an nginx auth_request subrequest: 200 with identity headers, never the client's spoofed ones", async () => {
    const { key, apiKey } = await issue({ scopes: ["orders:read", "orders:write"] });
    const res = await nginxSubrequest(kw.port, "/v1/authz?required_scopes=orders:read", [
      ["X-Api-Key", key],
      ["X-Keyward-Key-Id", "key_spoofed"],
      ["X-Keyward-Tenant-Id", "evil"],
      ["X-Keyward-Admin", "true"],
      ["User-Agent", "curl/8.5.0"],
    ]);
    expect(res.status).toBe(200);
    expect(keywardHeaders(res.headers)).toEqual({
      "x-keyward-key-id": apiKey!.id,
      "x-keyward-tenant-id": "acme",
      "x-keyward-scopes": "orders:read,orders:write",
    });
    expect(res.headers["cache-control"]).toBe("no-store");
    expect(res.body).toBe("");
  });

  it("takes required scopes from the auth URL's query and denies a missing one with 403 JSON", async () => {
    const { key } = await issue();
    const res = await get(kw.port, "/v1/authz?required_scopes=orders:read,billing:write", {
      "x-api-key": key,
      "x-original-uri": "/billing",
    });
    expect(res.status).toBe(403);
    expect(res.headers["content-type"]).toBe("application/json");
    expect(res.headers["www-authenticate"]).toBe('Bearer realm="keyward", error="insufficient_scope", scope="billing:write"');
    expect(JSON.parse(res.body)).toEqual({ error: "API key lacks required scope: billing:write", code: "insufficient_scope" });
    expect(keywardHeaders(res.headers)).toEqual({});
    expect(res.body).not.toContain(key);
    // The original request's URI is not where scopes come from.
    expect((await get(kw.port, "/v1/authz", { "x-api-key": key, "x-original-uri": "/x?required_scopes=nope" })).status).toBe(200);
  });

  it("denies missing, unknown and revoked keys with 401 + www-authenticate, echoing nothing", async () => {
    const missing = await get(kw.port, "/v1/authz", { "x-keyward-key-id": "key_spoofed" });
    expect(missing.status).toBe(401);
    expect(missing.headers["www-authenticate"]).toBe('Bearer realm="keyward"');
    expect(JSON.parse(missing.body)).toEqual({ error: "API key required", code: "missing_key" });
    expect(keywardHeaders(missing.headers)).toEqual({});

    const unknown = await get(kw.port, "/v1/authz", { authorization: "Bearer kw_0000000000000000000000000000000000000" });
    expect(unknown.status).toBe(401);
    expect(JSON.parse(unknown.body).code).toBe("invalid_key");
    expect(unknown.headers["www-authenticate"]).toMatch(/error="invalid_token"/);

    const { key, apiKey } = await issue();
    await keys.revoke({ id: apiKey!.id }, { headers: adminHeaders });
    const revoked = await get(kw.port, "/v1/authz", { "x-api-key": key });
    expect(revoked.status).toBe(401);
    expect(JSON.parse(revoked.body).code).toBe("key_revoked");
  });

  it("rate-limits with 429, retry-after and x-ratelimit-* (shared with Verify and Check)", async () => {
    const { key } = await issue({ rateLimit: 1, rateLimitWindowSeconds: 90 });
    const first = await get(kw.port, "/v1/authz", { "x-api-key": key });
    expect(first.status).toBe(200);
    expect(first.headers).toMatchObject({ "x-ratelimit-limit": "1", "x-ratelimit-remaining": "0" });
    const limited = await get(kw.port, "/v1/authz", { "x-api-key": key });
    expect(limited.status).toBe(429);
    expect(Number(limited.headers["retry-after"])).toBeGreaterThanOrEqual(1);
    expect(Number(limited.headers["retry-after"])).toBeLessThanOrEqual(90);
    expect(JSON.parse(limited.body)).toEqual({ error: "rate limit exceeded", code: "rate_limited" });
  });

  it("accepts any method, Traefik's headers, Envoy's path_prefix form and h2c on the same port", async () => {
    const { key, apiKey } = await issue();
    const post = await get(kw.port, "/v1/authz", { "x-api-key": key, "x-forwarded-method": "POST", "x-forwarded-uri": "/orders" }, "POST");
    expect(post.status).toBe(200);
    const head = await get(kw.port, "/v1/authz", { "x-api-key": key }, "HEAD");
    expect(head.status).toBe(200);
    expect(head.headers["x-keyward-key-id"]).toBe(apiKey!.id);
    const prefixed = await get(kw.port, "/v1/authz/orders/42?required_scopes=orders:read", { "x-api-key": key });
    expect(prefixed.status).toBe(200);
    const h2 = await h2Get(kw.port, "/v1/authz?required_scopes=orders:read", { "x-api-key": key, "x-keyward-tenant-id": "evil" });
    expect(h2.status).toBe(200);
    expect(keywardHeaders(h2.headers)).toEqual({ "x-keyward-key-id": apiKey!.id, "x-keyward-tenant-id": "acme", "x-keyward-scopes": "orders:read" });
    const h2Denied = await h2Get(kw.port, "/v1/authz", {});
    expect(h2Denied.status).toBe(401);
    expect(JSON.parse(h2Denied.body).code).toBe("missing_key");
  });

  it("serves /healthz and /readyz, and leaves RPC paths to Connect", async () => {
    expect(await get(kw.port, "/healthz")).toMatchObject({ status: 200, body: '{"status":"ok"}' });
    expect(await get(kw.port, "/readyz")).toMatchObject({ status: 200, body: '{"status":"serving","database":"up"}' });
    expect((await h2Get(kw.port, "/readyz", {})).status).toBe(200);
    expect((await get(kw.port, "/healthz", {}, "POST")).status).toBe(405);
    const { key } = await issue();
    const rpc = await fetch(`${kw.baseUrl}/keyward.v1.KeyService/Verify`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ key }),
    });
    expect(rpc.status).toBe(200);
    expect(await rpc.json()).toMatchObject({ valid: true, code: "VERIFY_CODE_VALID" });
  });
});
