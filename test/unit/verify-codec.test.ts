// The hand-written Verify codec must agree with protobuf-es on every input.
import { create, equals, fromBinary, toBinary } from "@bufbuild/protobuf";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { KeyRecord } from "../../src/core/model.js";
import type { Decision, VerifyCode } from "../../src/core/verifier.js";
import { KeywardError } from "../../src/core/errors.js";
import {
  RateLimitStatusSchema,
  VerifyRequestSchema,
  VerifyResponseSchema,
} from "../../src/gen/keyward/v1/keys_pb.js";
import { toCachedKey } from "../../src/core/key-cache.js";
import { ApiKeySchema } from "../../src/gen/keyward/v1/keys_pb.js";
import { apiKeyToProto, verifyCodeToProto } from "../../src/transport/convert.js";
import {
  cachedApiKeyToProto,
  decodeVerifyRequest,
  encodeVerifyResponse,
  encodeVerifyResponseFrame,
  packApiKey,
} from "../../src/transport/verify-codec.js";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";

const ms = fc.integer({ min: 0, max: 253_402_300_799_000 });
const date = ms.map((n) => new Date(n));
const text = fc.string({ unit: "grapheme", maxLength: 40 });

const record: fc.Arbitrary<KeyRecord> = fc.record({
  id: text,
  tenantId: text,
  name: text,
  nameAr: text,
  prefix: text,
  hash: fc.constant("h"),
  scopes: fc.array(text, { maxLength: 5 }),
  rateLimit: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
  rateLimitWindowSeconds: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
  expiresAt: fc.option(date, { nil: null }),
  createdAt: date,
  updatedAt: date,
  lastUsedAt: fc.option(date, { nil: null }),
  requestCount: fc.integer({ min: 0, max: 2 ** 52 }),
  enabled: fc.boolean(),
  revokedAt: fc.option(date, { nil: null }),
  revokedReason: text,
  createdBy: text,
  metadata: fc.dictionary(text, text, { maxKeys: 4 }),
});

/** A decision on the cached form of a record, with the record it came from. */
const decision: fc.Arbitrary<{ d: Decision; record: KeyRecord | null }> = fc
  .record({
    code: fc.constantFrom<VerifyCode>("valid", "not_found", "revoked", "expired", "disabled", "rate_limited", "insufficient_scope"),
    record: fc.option(record, { nil: null }),
    rateLimit: fc.option(
      fc.record({ limit: fc.integer({ min: 0, max: 2 ** 32 - 1 }), remaining: fc.integer({ min: 0, max: 2 ** 32 - 1 }), resetAt: ms }),
      { nil: null },
    ),
  })
  .map(({ code, record, rateLimit }) => ({
    d: { code, key: record && toCachedKey(record, packApiKey), rateLimit, missingScopes: [] },
    record,
  }));

const pending = fc.option(fc.record({ count: fc.integer({ min: 1, max: 1_000_000 }), lastUsedAt: ms }), { nil: undefined });

describe("verify codec", () => {
  it("encodes VerifyResponse exactly as protobuf-es would decode it", () => {
    fc.assert(
      fc.property(decision, pending, ({ d, record }, p) => {
        // What the full record would answer: the cached form must lose nothing.
        const expected = create(VerifyResponseSchema, {
          valid: d.code === "valid",
          code: verifyCodeToProto[d.code],
          apiKey: record ? apiKeyToProto(record, p) : undefined,
          rateLimit: d.rateLimit
            ? create(RateLimitStatusSchema, { limit: d.rateLimit.limit, remaining: d.rateLimit.remaining, resetAt: timestampFromMs(d.rateLimit.resetAt) })
            : undefined,
        });
        const bytes = encodeVerifyResponse(d, p);
        const actual = fromBinary(VerifyResponseSchema, bytes);
        expect(equals(VerifyResponseSchema, actual, expected)).toBe(true);
        // The framed variant carries the same bytes behind a gRPC length prefix.
        const framed = encodeVerifyResponseFrame(d, p);
        expect(framed[0]).toBe(0);
        expect(framed.readUInt32BE(1)).toBe(bytes.length);
        expect(Buffer.from(framed.subarray(5)).equals(Buffer.from(bytes))).toBe(true);
      }),
      { numRuns: 500 },
    );
  });

  it("keeps every ApiKey field of a record in its cached form (the Connect path reads it back)", () => {
    fc.assert(
      fc.property(record, pending, (r, p) => {
        const cached = toCachedKey(r, packApiKey);
        expect(equals(ApiKeySchema, cachedApiKeyToProto(cached, p), apiKeyToProto(r, p))).toBe(true);
        expect(cached).toMatchObject({
          id: r.id,
          tenantId: r.tenantId,
          scopes: r.scopes,
          rateLimit: r.rateLimit,
          rateLimitWindowSeconds: r.rateLimitWindowSeconds,
          expiresAt: r.expiresAt?.getTime() ?? null,
          enabled: r.enabled,
          revoked: r.revokedAt !== null,
          lastUsedAt: r.lastUsedAt?.getTime() ?? null,
          requestCount: r.requestCount,
        });
      }),
      { numRuns: 500 },
    );
  });

  it("decodes whatever protobuf-es encodes, unknown fields included", () => {
    fc.assert(
      fc.property(text, fc.array(text, { maxLength: 6 }), fc.uint8Array({ maxLength: 20 }), (key, requiredScopes, junk) => {
        const bytes = toBinary(VerifyRequestSchema, create(VerifyRequestSchema, { key, requiredScopes }));
        // An unknown length-delimited field 99 must be skipped.
        const unknown = Buffer.concat([Buffer.from([0x9a, 0x06, junk.length]), Buffer.from(junk)]);
        expect(decodeVerifyRequest(Buffer.concat([unknown, Buffer.from(bytes)]))).toEqual({ key, requiredScopes });
      }),
      { numRuns: 500 },
    );
  });

  it("never throws anything but INVALID_ARGUMENT on random bytes, and agrees with protobuf-es when both accept", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        let ours: unknown;
        try {
          ours = decodeVerifyRequest(bytes);
        } catch (e) {
          expect(e).toBeInstanceOf(KeywardError);
          expect((e as KeywardError).kind).toBe("invalid_argument");
          return;
        }
        let theirs;
        try {
          theirs = fromBinary(VerifyRequestSchema, bytes);
        } catch {
          return;
        }
        expect(ours).toEqual({ key: theirs.key, requiredScopes: theirs.requiredScopes });
      }),
      { numRuns: 3000 },
    );
  });

  it("rejects invalid UTF-8 and truncated fields", () => {
    expect(() => decodeVerifyRequest(Buffer.from([0x0a, 0x02, 0xc3, 0x28]))).toThrow(/invalid UTF-8/);
    expect(() => decodeVerifyRequest(Buffer.from([0x0a, 0x05, 0x61]))).toThrow(/not a valid/);
    expect(() => decodeVerifyRequest(Buffer.from([0x08, 0x01]))).toThrow(/not a valid/);
    expect(() => decodeVerifyRequest(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]))).toThrow(/not a valid/);
    expect(decodeVerifyRequest(Buffer.from([0x0a, 0x03, 0xef, 0xbb, 0xbf])).key).toBe("\ufeff");
  });
});
