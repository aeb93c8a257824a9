// envoy.service.auth.v3.Authorization/Check against a real keyward on port 0:
// realistic CheckRequests as Envoy builds them (lowercase `headers`, or
// `header_map` with raw values when encode_raw_headers is on, per-route
// context_extensions), through grpc-js (the lean path) and through Connect
// clients (the router: Connect JSON over HTTP/1.1 and gRPC-Web).
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { Client } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HeaderValueOption_HeaderAppendAction } from "../../src/gen/envoy/config/core/v3/base_pb.js";
import {
  Authorization,
  type CheckRequestSchema,
  type CheckResponse,
} from "../../src/gen/envoy/service/auth/v3/external_auth_pb.js";
import { KeyService, VerifyCode } from "../../src/gen/keyward/v1/keys_pb.js";
import { connectClients, grpcJsClients, type ClientFactory } from "../helpers/clients.js";
import { adminHeaders, startKeyward, type RunningKeyward } from "../helpers/server.js";

type CheckInit = MessageInitShape<typeof CheckRequestSchema>;

/** What Envoy sends for `GET /orders/42` on a route with the given context extensions. */
function envoyCheck(headers: Record<string, string>, contextExtensions: Record<string, string> = {}): CheckInit {
  return {
    attributes: {
      source: { address: { address: { case: "socketAddress", value: { address: "10.0.0.7", portSpecifier: { case: "portValue", value: 51234 } } } } },
      destination: { address: { address: { case: "socketAddress", value: { address: "10.0.0.2", portSpecifier: { case: "portValue", value: 8080 } } } } },
      request: {
        time: timestampFromMs(Date.now()),
        http: {
          id: "5c0d9d6e-8f37-4b2b-9c7e-0a1b2c3d4e5f",
          method: "GET",
          path: "/orders/42?expand=items",
          host: "api.example.com",
          scheme: "https",
          protocol: "HTTP/2",
          size: -1n,
          headers: {
            ":authority": "api.example.com",
            ":method": "GET",
            ":path": "/orders/42?expand=items",
            ":scheme": "https",
            "user-agent": "curl/8.5.0",
            accept: "*/*",
            "x-forwarded-proto": "https",
            "x-request-id": "5c0d9d6e-8f37-4b2b-9c7e-0a1b2c3d4e5f",
            ...headers,
          },
        },
      },
      contextExtensions,
    },
  };
}

/** The same request with encode_raw_headers: header_map entries with raw_value only. */
function envoyRawCheck(headers: [string, string][], contextExtensions: Record<string, string> = {}): CheckInit {
  const encoder = new TextEncoder();
  return {
    attributes: {
      request: {
        http: {
          method: "POST",
          path: "/orders",
          host: "api.example.com",
          protocol: "HTTP/1.1",
          headerMap: {
            headers: [[":method", "POST"], [":path", "/orders"], ["content-type", "application/json"], ...headers].map(([key, value]) => ({
              key,
              rawValue: encoder.encode(value),
            })),
          },
        },
      },
      contextExtensions,
    },
  };
}

const OVERWRITE = HeaderValueOption_HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD;

function allowed(response: CheckResponse) {
  expect(response.status?.code ?? 0).toBe(0);
  expect(response.httpResponse.case).toBe("okResponse");
  if (response.httpResponse.case !== "okResponse") throw new Error("unreachable");
  const ok = response.httpResponse.value;
  for (const h of [...ok.headers, ...ok.responseHeadersToAdd]) expect(h.appendAction).toBe(OVERWRITE);
  return {
    upstream: Object.fromEntries(ok.headers.map((h) => [h.header!.key, h.header!.value])),
    remove: [...ok.headersToRemove].sort(),
    downstream: Object.fromEntries(ok.responseHeadersToAdd.map((h) => [h.header!.key, h.header!.value])),
    metadata: response.dynamicMetadata,
  };
}

function denied(response: CheckResponse) {
  expect(response.httpResponse.case).toBe("deniedResponse");
  if (response.httpResponse.case !== "deniedResponse") throw new Error("unreachable");
  const d = response.httpResponse.value;
  return {
    rpcCode: response.status?.code,
    http: d.status?.code,
    headers: Object.fromEntries(d.headers.map((h) => [h.header!.key, h.header!.value])),
    body: JSON.parse(d.body) as Record<string, unknown>,
    rawBody: d.body,
  };
}

const clientKinds: (() => ClientFactory)[] = [grpcJsClients, () => connectClients("connect-json"), () => connectClients("grpc-web")];

describe("ext_authz Check", () => {
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
    keys.issue({ tenantId: "acme", name: "ext_authz test", scopes: ["orders:read"], ...extra }, { headers: adminHeaders });

  describe.each(clientKinds.map((make) => ({ make, kind: make().kind })))("through $kind", ({ make }) => {
    let clients: ClientFactory;
    let authz: Client<typeof Authorization>;
    beforeAll(() => {
      clients = make();
      authz = clients.client(Authorization, kw.baseUrl);
    });
    afterAll(() => clients?.close());

    it("allows a valid key: identity headers overwrite spoofed ones, the key and foreign x-keyward-* are removed", async () => {
      const { key, apiKey } = await issue({ scopes: ["orders:read", "orders:write"] });
      const response = await authz.check(
        envoyCheck(
          {
            "x-api-key": key,
            "x-keyward-key-id": "key_spoofed",
            "x-keyward-tenant-id": "other-tenant",
            "x-keyward-scopes": "keyward:admin",
            "x-keyward-admin": "true",
          },
          { required_scopes: "orders:read" },
        ),
      );
      const ok = allowed(response);
      expect(ok.upstream).toEqual({
        "x-keyward-key-id": apiKey!.id,
        "x-keyward-tenant-id": "acme",
        "x-keyward-scopes": "orders:read,orders:write",
      });
      // Overwritten names are not removed (Envoy removes after setting); the rest are.
      expect(ok.remove).toEqual(["x-api-key", "x-keyward-admin"]);
      expect(ok.downstream).toEqual({});
      expect(ok.metadata).toEqual({ key_id: apiKey!.id, tenant_id: "acme", scopes: ["orders:read", "orders:write"] });
    });

    it("reads header_map raw values (encode_raw_headers) and Bearer credentials", async () => {
      const { key, apiKey } = await issue({ scopes: [] });
      const ok = allowed(
        await authz.check(envoyRawCheck([["authorization", `Bearer ${key}`], ["x-keyward-scopes", "keyward:admin"]])),
      );
      expect(ok.upstream).toEqual({ "x-keyward-key-id": apiKey!.id, "x-keyward-tenant-id": "acme" });
      // A key without scopes sets no scopes header, so the spoofed one must go.
      expect(ok.remove).toEqual(["authorization", "x-keyward-scopes"]);
      const viaRawApiKey = allowed(await authz.check(envoyRawCheck([["x-api-key", key]])));
      expect(viaRawApiKey.upstream["x-keyward-key-id"]).toBe(apiKey!.id);
    });

    it("accepts comma- or space-separated required scopes and denies a missing one with 403", async () => {
      const { key } = await issue({ scopes: ["orders:read", "orders:write"] });
      allowed(await authz.check(envoyCheck({ "x-api-key": key }, { required_scopes: "orders:read orders:write" })));
      allowed(await authz.check(envoyCheck({ "x-api-key": key }, { required_scopes: "orders:read,orders:write" })));
      const d = denied(await authz.check(envoyCheck({ "x-api-key": key }, { required_scopes: "orders:read, billing:read" })));
      expect(d).toMatchObject({ rpcCode: 7, http: 403, body: { code: "insufficient_scope" } });
      expect(d.headers["www-authenticate"]).toBe('Bearer realm="keyward", error="insufficient_scope", scope="billing:read"');
      expect(d.headers["content-type"]).toBe("application/json");
      expect(d.rawBody).not.toContain(key);
    });

    it("denies missing, unknown, revoked, disabled and expired keys with 401 UNAUTHENTICATED", async () => {
      const missing = denied(await authz.check(envoyCheck({ authorization: "Basic dXNlcjpwYXNz" })));
      expect(missing).toMatchObject({ rpcCode: 16, http: 401, body: { code: "missing_key", error: "API key required" } });
      expect(missing.headers["www-authenticate"]).toBe('Bearer realm="keyward"');

      const unknown = denied(await authz.check(envoyCheck({ "x-api-key": "kw_0000000000000000000000000000000000000" })));
      expect(unknown).toMatchObject({ rpcCode: 16, http: 401, body: { code: "invalid_key" } });
      expect(unknown.headers["www-authenticate"]).toMatch(/^Bearer realm="keyward", error="invalid_token"/);

      const revoked = await issue();
      await keys.revoke({ id: revoked.apiKey!.id, reason: "leaked" }, { headers: adminHeaders });
      const r = denied(await authz.check(envoyCheck({ "x-api-key": revoked.key })));
      expect(r).toMatchObject({ rpcCode: 16, http: 401, body: { code: "key_revoked" } });
      expect(r.rawBody).not.toContain(revoked.key);

      const disabled = await issue();
      await keys.updateKey({ id: disabled.apiKey!.id, enabled: false, updateMask: { paths: ["enabled"] } }, { headers: adminHeaders });
      expect(denied(await authz.check(envoyCheck({ "x-api-key": disabled.key })))).toMatchObject({ http: 401, body: { code: "key_disabled" } });

      const expired = await issue();
      await keys.updateKey(
        { id: expired.apiKey!.id, expiresAt: timestampFromMs(Date.now() - 1000), updateMask: { paths: ["expires_at"] } },
        { headers: adminHeaders },
      );
      expect(denied(await authz.check(envoyCheck({ "x-api-key": expired.key })))).toMatchObject({ http: 401, body: { code: "key_expired" } });
    });

    it("reports the rate limit downstream and denies the spent window with 429 + retry-after", async () => {
      const { key } = await issue({ rateLimit: 2, rateLimitWindowSeconds: 120 });
      const first = allowed(await authz.check(envoyCheck({ "x-api-key": key })));
      expect(first.downstream).toMatchObject({ "x-ratelimit-limit": "2", "x-ratelimit-remaining": "1" });
      const reset = Number(first.downstream["x-ratelimit-reset"]);
      expect(reset).toBeGreaterThan(100);
      expect(reset).toBeLessThanOrEqual(120);
      expect(allowed(await authz.check(envoyCheck({ "x-api-key": key }))).downstream["x-ratelimit-remaining"]).toBe("0");
      const limited = denied(await authz.check(envoyCheck({ "x-api-key": key })));
      expect(limited).toMatchObject({ rpcCode: 8, http: 429, body: { code: "rate_limited" } });
      const retryAfter = Number(limited.headers["retry-after"]);
      expect(retryAfter).toBeGreaterThanOrEqual(1);
      expect(retryAfter).toBeLessThanOrEqual(120);
      expect(limited.headers["x-ratelimit-remaining"]).toBe("0");
    });
  });

  it("shares Verify's rate limiter and usage counting: one decision core, two wire formats", async () => {
    const grpc = grpcJsClients();
    try {
      const authz = grpc.client(Authorization, kw.baseUrl);
      const verifier = grpc.client(KeyService, kw.baseUrl);
      const { key, apiKey } = await issue({ rateLimit: 3, rateLimitWindowSeconds: 600 });
      expect((await verifier.verify({ key })).code).toBe(VerifyCode.VALID);
      allowed(await authz.check(envoyCheck({ "x-api-key": key })));
      expect((await verifier.verify({ key })).rateLimit?.remaining).toBe(0);
      expect(denied(await authz.check(envoyCheck({ "x-api-key": key }))).http).toBe(429);
      const { apiKey: seen } = await keys.getKey({ id: apiKey!.id }, { headers: adminHeaders });
      expect(seen!.requestCount).toBe(3n);
    } finally {
      grpc.close();
    }
  });

  it("never writes key material to the log", async () => {
    const { key } = await issue();
    const grpc = grpcJsClients();
    try {
      const authz = grpc.client(Authorization, kw.baseUrl);
      allowed(await authz.check(envoyCheck({ "x-api-key": key })));
      denied(await authz.check(envoyCheck({ "x-api-key": `${key}x` })));
    } finally {
      grpc.close();
    }
    const secret = key.slice(key.indexOf("_") + 1);
    expect(kw.logs.join("")).not.toContain(secret);
  });
});
