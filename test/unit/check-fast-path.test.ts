// The Check lean path's shortcuts must never change an answer: the decoder's
// header filter (only headers the decision can read become strings) and the
// allow results shared per key record (built once, encoded once).
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { KeywardError } from "../../src/core/errors.js";
import type { Decision } from "../../src/core/verifier.js";
import { CheckRequestSchema, CheckResponseSchema } from "../../src/gen/envoy/service/auth/v3/external_auth_pb.js";
import { IDENTITY_HEADER_PREFIX } from "../../src/transport/authz-response.js";
import {
  createHeaderFilter,
  decodeCheckRequest,
  encodeCheckResponse,
  encodeCheckResponseFrame,
} from "../../src/transport/check-codec.js";
import { checkResponseOf, createCheckDecider, type CheckInput, type CheckResult, type ExtAuthzOptions } from "../../src/transport/ext-authz.js";

const NOW = Date.parse("2026-01-01T00:00:00Z");
type Key = NonNullable<Decision["key"]>;
const keyRecord = (id: string, scopes: string[]) => ({ id, tenantId: "acme", scopes }) as unknown as Key;

function deciderWith(decisions: Record<string, Decision>) {
  const options: ExtAuthzOptions = {
    // Own properties only: a key such as "toString" must not find an Object.prototype member.
    verifier: { verify: (key) => (Object.hasOwn(decisions, key) ? decisions[key]! : { code: "not_found", key: null, rateLimit: null, missingScopes: [] }) },
    credential: { apiKeyHeader: "x-api-key", acceptBearer: true },
    removeCredential: true,
    clock: { now: () => NOW },
  };
  return createCheckDecider(options);
}

const FILTER = createHeaderFilter(["x-api-key", "authorization"], [IDENTITY_HEADER_PREFIX]);

/** What the filter must keep: ASCII-case-insensitive name or prefix matches, and any non-ASCII name. */
const kept = (name: string) => {
  if (/[^\x00-\x7f]/.test(name)) return true;
  const lower = name.replace(/[A-Z]/g, (c) => c.toLowerCase());
  return lower === "x-api-key" || lower === "authorization" || lower.startsWith(IDENTITY_HEADER_PREFIX);
};

const mixedCase = (s: string) =>
  fc.array(fc.boolean(), { minLength: s.length, maxLength: s.length }).map((up) => [...s].map((c, i) => (up[i] ? c.toUpperCase() : c)).join(""));
const name = fc.oneof(
  fc.constantFrom("x-api-key", "authorization", "x-keyward-key-id", "x-keyward-", "x-keyward", "x-api-ke", "x-api-keys").chain(mixedCase),
  // U+212A KELVIN SIGN lowercases to "k": such a name must reach RequestView, which lowercases with Unicode rules.
  fc.constantFrom("x-api-\u212aey", "X-KEYWARD-\u00e9", "user-agent", "cookie", ""),
  fc.string({ maxLength: 12 }),
);
const value = fc.oneof(fc.constantFrom("kw_good", " kw_good ", "Bearer kw_good", "", "x"), fc.string({ maxLength: 10 }));
const encoder = new TextEncoder();
const requestBytes = fc
  .record({
    headers: fc.array(fc.tuple(name, value), { maxLength: 8 }),
    headerMap: fc.array(fc.tuple(name, fc.oneof(value, fc.constant("")), fc.oneof(value.map((v) => encoder.encode(v)), fc.uint8Array({ maxLength: 6 }))), {
      maxLength: 6,
    }),
  })
  .map(({ headers, headerMap }) =>
    toBinary(
      CheckRequestSchema,
      create(CheckRequestSchema, {
        attributes: {
          request: {
            http: {
              headers: Object.fromEntries(headers),
              headerMap: { headers: headerMap.map(([key, value, rawValue]) => ({ key, value, rawValue })) },
            },
          },
        },
      }),
    ),
  );

/** Flips bytes, so that some header names and values turn into invalid UTF-8. */
const damaged = fc.tuple(requestBytes, fc.array(fc.tuple(fc.nat(), fc.constantFrom(0x80, 0xc3, 0xff, 0xed)), { maxLength: 3 })).map(([bytes, flips]) => {
  const copy = Buffer.from(bytes);
  for (const [at, byte] of flips) if (copy.length > 0) copy[at % copy.length] = byte;
  return copy;
});

function outcome(decode: () => CheckInput): { input?: CheckInput; error?: string } {
  try {
    return { input: decode() };
  } catch (e) {
    expect(e).toBeInstanceOf(KeywardError);
    return { error: (e as KeywardError).kind };
  }
}

describe("Check lean path shortcuts", () => {
  it("the header filter keeps exactly the headers the decision may read, and accepts and rejects what the full decoder does", () => {
    fc.assert(
      fc.property(fc.oneof(requestBytes, damaged), (bytes) => {
        const full = outcome(() => decodeCheckRequest(bytes));
        const filtered = outcome(() => decodeCheckRequest(bytes, FILTER));
        expect(filtered.error).toBe(full.error);
        if (full.input === undefined) return;
        expect(filtered.input!.headers).toEqual(full.input.headers.filter(([n]) => kept(n)));
        expect(filtered.input!.headerMap).toEqual(full.input.headerMap.filter(([n]) => kept(n)));
        expect(filtered.input!.requiredScopes).toBe(full.input.requiredScopes);
      }),
      { numRuns: 2000 },
    );
  });

  it("never changes a Check answer", () => {
    const good = keyRecord("key_1", ["read"]);
    const decide = deciderWith({ kw_good: { code: "valid", key: good, rateLimit: null, missingScopes: [] } });
    const answer = (input: CheckInput) => toBinary(CheckResponseSchema, checkResponseOf(decide(input) as CheckResult));
    fc.assert(
      fc.property(requestBytes, (bytes) => {
        expect(Buffer.from(answer(decodeCheckRequest(bytes, FILTER)))).toEqual(Buffer.from(answer(decodeCheckRequest(bytes))));
      }),
      // Includes a header_map name with U+212A (lowercases to x-api-key) holding the raw value "toString".
      { numRuns: 1000, examples: [[Uint8Array.from([10, 31, 34, 29, 18, 27, 106, 25, 10, 23, 10, 11, 120, 45, 97, 112, 105, 45, 226, 132, 170, 101, 121, 26, 8, 116, 111, 83, 116, 114, 105, 110, 103])]] },
    );
  });

  it("shares one allow result per key record, and only when nothing in it varies per request", () => {
    const key = keyRecord("key_1", ["read", "write"]);
    const limited = keyRecord("key_2", []);
    const decisions: Record<string, Decision> = {
      kw_good: { code: "valid", key, rateLimit: null, missingScopes: [] },
      kw_limited: { code: "valid", key: limited, rateLimit: { limit: 10, remaining: 9, resetAt: NOW + 60_000 }, missingScopes: [] },
    };
    const decide = deciderWith(decisions);
    const input = (headers: [string, string][]): CheckInput => ({ headers, headerMap: [], requiredScopes: undefined });

    const first = decide(input([["x-api-key", "kw_good"]])) as CheckResult;
    const second = decide(input([["x-api-key", "kw_good"]])) as CheckResult;
    expect(first.shared).toBe(true);
    expect(second).toBe(first);
    expect(Object.isFrozen(first)).toBe(true);
    // The key in `authorization` removes that header instead: another shared result.
    const bearer = decide(input([["authorization", "Bearer kw_good"]])) as CheckResult;
    expect(bearer).not.toBe(first);
    expect(bearer.allowed && bearer.headersToRemove).toEqual(["authorization"]);
    expect(decide(input([["authorization", "Bearer kw_good"]]))).toBe(bearer);

    // A changed key is a new record object: a new result, never the old one.
    decisions.kw_good = { code: "valid", key: keyRecord("key_1", ["read"]), rateLimit: null, missingScopes: [] };
    const changed = decide(input([["x-api-key", "kw_good"]])) as CheckResult;
    expect(changed).not.toBe(first);
    expect(changed.allowed && changed.metadata).toContainEqual(["scopes", ["read"]]);

    // Client-sent x-keyward-* headers (to strip) and rate-limit headers make a result per request.
    const spoofed = decide(input([["x-api-key", "kw_good"], ["x-keyward-role", "admin"]])) as CheckResult;
    expect(spoofed.shared).toBeUndefined();
    expect(spoofed.allowed && spoofed.headersToRemove).toEqual(["x-api-key", "x-keyward-role"]);
    expect((decide(input([["x-api-key", "kw_limited"]])) as CheckResult).shared).toBeUndefined();

    // Unknown keys and missing credentials share their denials too.
    const unknown = decide(input([["x-api-key", "kw_unknown"]])) as CheckResult;
    expect(unknown.shared).toBe(true);
    expect(unknown.allowed).toBe(false);
    expect(decide(input([["x-api-key", "kw_other"]]))).toBe(unknown);
  });

  it("encodes a shared result's frame once, with the same bytes as a fresh encoding", () => {
    const decide = deciderWith({ kw_good: { code: "valid", key: keyRecord("key_1", ["read"]), rateLimit: null, missingScopes: [] } });
    const result = decide({ headers: [["x-api-key", "kw_good"]], headerMap: [], requiredScopes: undefined }) as CheckResult;
    const frame = encodeCheckResponseFrame(result);
    expect(encodeCheckResponseFrame(result)).toBe(frame);
    const message = encodeCheckResponse(result);
    expect(frame.readUInt32BE(1)).toBe(message.length);
    expect(frame[0]).toBe(0);
    expect(Buffer.from(frame.subarray(5))).toEqual(Buffer.from(message));
    expect(fromBinary(CheckResponseSchema, frame.subarray(5))).toEqual(checkResponseOf(result));
    // A per-request result is encoded every time.
    const fresh = { ...result, shared: undefined } as CheckResult;
    expect(encodeCheckResponseFrame(fresh)).not.toBe(encodeCheckResponseFrame(fresh));
  });
});
