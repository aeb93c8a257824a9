// The shared authorization response mapping and the ext_authz Check handler,
// over the real core with in-memory stores.
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { unavailable } from "../../src/core/errors.js";
import type { Decision } from "../../src/core/verifier.js";
import { HeaderValueOption_HeaderAppendAction } from "../../src/gen/envoy/config/core/v3/base_pb.js";
import { CheckRequestSchema, type CheckResponse } from "../../src/gen/envoy/service/auth/v3/external_auth_pb.js";
import {
  decisionOutcome,
  failureOutcome,
  findCredential,
  missingCredential,
  parseRequiredScopes,
  secondsUntil,
  type DenyOutcome,
} from "../../src/transport/authz-response.js";
import { createCheckHandler, type ExtAuthzOptions } from "../../src/transport/ext-authz.js";
import { ADMIN, createCore, issueInput } from "../helpers/core.js";

const credential = { apiKeyHeader: "x-api-key", acceptBearer: true };
const lookup = (headers: Record<string, string>) => ({ header: (name: string) => headers[name] });

describe("authz response mapping", () => {
  it("reads the API-key header first, then authorization: Bearer", () => {
    expect(findCredential(lookup({ "x-api-key": " kw_a ", authorization: "Bearer kw_b" }), credential)).toEqual({ key: "kw_a", header: "x-api-key" });
    expect(findCredential(lookup({ authorization: "bearer kw_b" }), credential)).toEqual({ key: "kw_b", header: "authorization" });
    expect(findCredential(lookup({ authorization: "Basic a2V5OnNlY3JldA==" }), credential)).toBeUndefined();
    expect(findCredential(lookup({ "x-api-key": "  " }), credential)).toBeUndefined();
    expect(findCredential(lookup({ authorization: "Bearer kw_b" }), { ...credential, acceptBearer: false })).toBeUndefined();
    expect(findCredential(lookup({ "x-token": "kw_c" }), { apiKeyHeader: "x-token", acceptBearer: false })).toEqual({ key: "kw_c", header: "x-token" });
  });

  it("splits required scopes on commas and whitespace, dropping blanks and repeats", () => {
    expect(parseRequiredScopes("orders:read, orders:write  admin,,orders:read")).toEqual(["orders:read", "orders:write", "admin"]);
    expect(parseRequiredScopes("")).toEqual([]);
    expect(parseRequiredScopes(undefined)).toEqual([]);
  });

  const record = {
    id: "key_1",
    tenantId: "acme",
    scopes: ["orders:read", "orders:write"],
  } as unknown as NonNullable<Decision["key"]>;
  const now = Date.parse("2026-01-01T00:00:00Z");
  const decision = (d: Partial<Decision>): Decision => ({ code: "valid", key: record, rateLimit: null, missingScopes: [], ...d });
  const header = (outcome: { headers: readonly (readonly [string, string])[] }, name: string) =>
    outcome.headers.find(([n]) => n === name)?.[1];

  it("allows with identity headers, and rate-limit headers only for limited keys", () => {
    const plain = decisionOutcome(decision({}), now);
    expect(plain).toMatchObject({ allowed: true, status: 200, identity: { keyId: "key_1", tenantId: "acme" } });
    if (!plain.allowed) throw new Error("unreachable");
    expect(plain.upstreamHeaders).toEqual([
      ["x-keyward-key-id", "key_1"],
      ["x-keyward-tenant-id", "acme"],
      ["x-keyward-scopes", "orders:read,orders:write"],
    ]);
    expect(plain.responseHeaders).toEqual([]);
    const limited = decisionOutcome(decision({ rateLimit: { limit: 10, remaining: 7, resetAt: now + 42_500 } }), now);
    if (!limited.allowed) throw new Error("unreachable");
    expect(limited.responseHeaders).toEqual([
      ["x-ratelimit-limit", "10"],
      ["x-ratelimit-remaining", "7"],
      ["x-ratelimit-reset", "43"],
    ]);
  });

  it.each([
    ["not_found", 401, "invalid_key"],
    ["revoked", 401, "key_revoked"],
    ["disabled", 401, "key_disabled"],
    ["expired", 401, "key_expired"],
  ] as const)("denies %s with %i %s and an invalid_token challenge", (code, status, errorCode) => {
    const outcome = decisionOutcome(decision({ code, key: code === "not_found" ? null : record }), now) as DenyOutcome;
    expect(outcome).toMatchObject({ allowed: false, status, code: errorCode });
    expect(outcome.headers[0]).toEqual(["content-type", "application/json"]);
    expect(header(outcome, "www-authenticate")).toMatch(/^Bearer realm="keyward", error="invalid_token"/);
    expect(JSON.parse(outcome.body)).toEqual({ error: outcome.message, code: errorCode });
  });

  it("challenges a missing credential without an error code (RFC 6750)", () => {
    const outcome = missingCredential();
    expect(outcome).toMatchObject({ status: 401, code: "missing_key" });
    expect(header(outcome, "www-authenticate")).toBe('Bearer realm="keyward"');
  });

  it("denies missing scopes with 403 naming them, quoting only safe values in the challenge", () => {
    const outcome = decisionOutcome(decision({ code: "insufficient_scope", missingScopes: ["billing:read", "admin"] }), now) as DenyOutcome;
    expect(outcome).toMatchObject({ status: 403, code: "insufficient_scope", keyId: "key_1", tenantId: "acme" });
    expect(header(outcome, "www-authenticate")).toBe('Bearer realm="keyward", error="insufficient_scope", scope="billing:read admin"');
    expect(JSON.parse(outcome.body).error).toContain("billing:read, admin");
    const odd = decisionOutcome(decision({ code: "insufficient_scope", missingScopes: ['a"b\r\nx-evil: 1'] }), now) as DenyOutcome;
    expect(header(odd, "www-authenticate")).toBe('Bearer realm="keyward", error="insufficient_scope"');
  });

  it("denies a spent rate limit with 429 and retry-after in whole seconds (at least 1)", () => {
    const outcome = decisionOutcome(
      decision({ code: "rate_limited", rateLimit: { limit: 5, remaining: 0, resetAt: now + 90_001 } }),
      now,
    ) as DenyOutcome;
    expect(outcome).toMatchObject({ status: 429, code: "rate_limited" });
    expect(header(outcome, "retry-after")).toBe("91");
    expect(header(outcome, "x-ratelimit-remaining")).toBe("0");
    const atReset = decisionOutcome(decision({ code: "rate_limited", rateLimit: { limit: 5, remaining: 0, resetAt: now } }), now);
    expect(header(atReset as DenyOutcome, "retry-after")).toBe("1");
    expect(secondsUntil(now - 5000, now)).toBe(0);
  });

  it("fails closed: storage unavailable is 503, anything else 500", () => {
    expect(failureOutcome(unavailable("database unavailable"))).toMatchObject({ status: 503, code: "unavailable" });
    expect(failureOutcome(new Error("boom"))).toMatchObject({ status: 500, code: "internal" });
  });
});

type CheckInit = MessageInitShape<typeof CheckRequestSchema>;

function checkRequest(headers: Record<string, string>, requiredScopes?: string): CheckInit {
  return {
    attributes: {
      request: { http: { method: "GET", path: "/orders/1", host: "api.example.com", scheme: "https", protocol: "HTTP/1.1", headers } },
      contextExtensions: requiredScopes === undefined ? {} : { required_scopes: requiredScopes },
    },
  };
}

function rawCheckRequest(pairs: [string, string][], requiredScopes?: string): CheckInit {
  const encoder = new TextEncoder();
  return {
    attributes: {
      request: { http: { method: "GET", path: "/", headerMap: { headers: pairs.map(([key, v]) => ({ key, rawValue: encoder.encode(v) })) } } },
      contextExtensions: requiredScopes === undefined ? {} : { required_scopes: requiredScopes },
    },
  };
}

async function setup(overrides: Partial<ExtAuthzOptions> = {}) {
  const core = createCore();
  const check = createCheckHandler({ verifier: core.verifier, credential, removeCredential: true, clock: core.clock, ...overrides });
  const run = async (init: CheckInit) => check(create(CheckRequestSchema, init));
  return { core, check, run };
}

function ok(response: CheckResponse) {
  expect(response.status?.code).toBe(0);
  if (response.httpResponse.case !== "okResponse") throw new Error(`expected ok_response, got ${response.httpResponse.case}`);
  const value = response.httpResponse.value;
  return {
    set: Object.fromEntries(value.headers.map((h) => [h.header!.key, h.header!.value])),
    actions: value.headers.map((h) => h.appendAction),
    remove: value.headersToRemove,
    response: Object.fromEntries(value.responseHeadersToAdd.map((h) => [h.header!.key, h.header!.value])),
  };
}

function deniedOf(response: CheckResponse) {
  if (response.httpResponse.case !== "deniedResponse") throw new Error(`expected denied_response, got ${response.httpResponse.case}`);
  const value = response.httpResponse.value;
  return {
    rpcCode: response.status?.code,
    status: value.status?.code,
    headers: Object.fromEntries(value.headers.map((h) => [h.header!.key, h.header!.value])),
    body: JSON.parse(value.body) as { error: string; code: string },
  };
}

describe("ext_authz Check handler", () => {
  it("allows a cached key synchronously with identity headers, removals and dynamic metadata", async () => {
    const { core, check } = await setup();
    const { key, record } = await core.keys.issue(ADMIN, issueInput({ scopes: ["orders:read", "orders:write"] }));
    const result = check(
      create(CheckRequestSchema, checkRequest({ "x-api-key": key, "x-keyward-key-id": "spoofed", "x-keyward-role": "root" }, "orders:read")),
    );
    // Issue primed the cache: the hot path answers without a promise.
    expect(result).not.toBeInstanceOf(Promise);
    const response = result as CheckResponse;
    const allowed = ok(response);
    expect(allowed.set).toEqual({ "x-keyward-key-id": record.id, "x-keyward-tenant-id": "acme", "x-keyward-scopes": "orders:read,orders:write" });
    expect(allowed.actions.every((a) => a === HeaderValueOption_HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD)).toBe(true);
    // The key leaves; the spoofed id is overwritten (so not removed); the unknown x-keyward-* goes.
    expect(allowed.remove.sort()).toEqual(["x-api-key", "x-keyward-role"]);
    expect(allowed.response).toEqual({});
    expect(response.dynamicMetadata).toEqual({ key_id: record.id, tenant_id: "acme", scopes: ["orders:read", "orders:write"] });
  });

  it("reads header_map raw values, takes Bearer credentials and strips a scopes header the key cannot fill", async () => {
    const { core, run } = await setup();
    const { key } = await core.keys.issue(ADMIN, issueInput({ scopes: [] }));
    const allowed = ok(await run(rawCheckRequest([["Authorization", `Bearer ${key}`], ["X-Keyward-Scopes", "admin"]])));
    expect(allowed.set["x-keyward-scopes"]).toBeUndefined();
    expect(allowed.remove.sort()).toEqual(["authorization", "x-keyward-scopes"]);
  });

  it("keeps the credential header when removal is off", async () => {
    const { core, run } = await setup({ removeCredential: false });
    const { key } = await core.keys.issue(ADMIN, issueInput({ scopes: ["a"] }));
    expect(ok(await run(checkRequest({ "x-api-key": key }))).remove).toEqual([]);
  });

  it("adds rate-limit headers to the client's response and denies the spent window with 429", async () => {
    const { core, run } = await setup();
    const { key } = await core.keys.issue(ADMIN, issueInput({ rateLimit: 2, rateLimitWindowSeconds: 60 }));
    expect(ok(await run(checkRequest({ "x-api-key": key }))).response).toEqual({
      "x-ratelimit-limit": "2",
      "x-ratelimit-remaining": "1",
      "x-ratelimit-reset": "60",
    });
    core.clock.advance(15_000);
    ok(await run(checkRequest({ "x-api-key": key })));
    const limited = deniedOf(await run(checkRequest({ "x-api-key": key })));
    expect(limited).toMatchObject({ rpcCode: 8, status: 429, body: { code: "rate_limited" } });
    expect(limited.headers["retry-after"]).toBe("45");
  });

  it("applies each request's own required_scopes when routes with different ones alternate", async () => {
    const { core, run } = await setup();
    const { key } = await core.keys.issue(ADMIN, issueInput({ scopes: ["orders:read"] }));
    for (let i = 0; i < 2; i++) {
      ok(await run(checkRequest({ "x-api-key": key }, "orders:read")));
      expect(deniedOf(await run(checkRequest({ "x-api-key": key }, "orders:write")))).toMatchObject({ status: 403, body: { code: "insufficient_scope" } });
      ok(await run(checkRequest({ "x-api-key": key })));
      expect(deniedOf(await run(checkRequest({ "x-api-key": key }, "orders:read, admin")))).toMatchObject({ status: 403 });
    }
  });

  it("denies missing, unknown, revoked and under-scoped keys with the right status and rpc code", async () => {
    const { core, run } = await setup();
    const { key, record } = await core.keys.issue(ADMIN, issueInput({ scopes: ["orders:read"] }));
    expect(deniedOf(await run(checkRequest({})))).toMatchObject({ rpcCode: 16, status: 401, body: { code: "missing_key" } });
    const unknown = deniedOf(await run(checkRequest({ "x-api-key": "kw_not-a-key" })));
    expect(unknown).toMatchObject({ rpcCode: 16, status: 401, body: { code: "invalid_key" } });
    expect(unknown.headers["content-type"]).toBe("application/json");
    const scoped = deniedOf(await run(checkRequest({ "x-api-key": key }, "orders:read orders:write")));
    expect(scoped).toMatchObject({ rpcCode: 7, status: 403, body: { code: "insufficient_scope" } });
    expect(JSON.stringify(scoped)).not.toContain(key);
    await core.keys.revoke(ADMIN, record.id, "leaked");
    expect(deniedOf(await run(checkRequest({ "x-api-key": key })))).toMatchObject({ rpcCode: 16, status: 401, body: { code: "key_revoked" } });
  });

  it("fails closed with 503 when an uncached key cannot be looked up, and reports the failure", async () => {
    const errors: unknown[] = [];
    const { core, run } = await setup({ onError: (e) => errors.push(e) });
    const { key } = await core.keys.issue(ADMIN, issueInput());
    core.cache.clear();
    core.stores.keys.findByHash = async () => {
      throw unavailable("database unavailable");
    };
    const response = await run(checkRequest({ "x-api-key": key }));
    expect(deniedOf(response)).toMatchObject({ rpcCode: 14, status: 503, body: { code: "unavailable" } });
    expect(errors).toHaveLength(1);
    core.stores.keys.findByHash = async () => {
      throw new Error("driver bug");
    };
    expect(deniedOf(await run(checkRequest({ "x-api-key": key })))).toMatchObject({ rpcCode: 13, status: 500, body: { code: "internal" } });
  });
});
