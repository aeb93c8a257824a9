// The hand-written Check codec must agree with protobuf-es: the lean path
// (decodeCheckRequest → decision → encodeCheckResponse) answers exactly what
// the message path (fromBinary → createCheckHandler) answers.
import { create, equals, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { KeywardError, unavailable } from "../../src/core/errors.js";
import type { CachedKey } from "../../src/core/model.js";
import type { Decision } from "../../src/core/verifier.js";
import { CheckRequestSchema, CheckResponseSchema } from "../../src/gen/envoy/service/auth/v3/external_auth_pb.js";
import { decodeCheckRequest, encodeCheckResponse, encodeCheckResponseFrame } from "../../src/transport/check-codec.js";
import {
  checkInputOf,
  checkResponseOf,
  createCheckDecider,
  createCheckHandler,
  type CheckAllow,
  type CheckDeny,
  type CheckInput,
  type ExtAuthzOptions,
} from "../../src/transport/ext-authz.js";

type CheckInit = MessageInitShape<typeof CheckRequestSchema>;

const NOW = Date.parse("2026-01-01T00:00:00Z");
const record = (id: string, scopes: string[]) => ({ id, tenantId: "acme", scopes }) as unknown as CachedKey;
const FULL = record("key_full", ["read", "write"]);
const BARE = record("key_bare", []);
const decision = (d: Partial<Decision>): Decision => ({ code: "valid", key: FULL, rateLimit: null, missingScopes: [], ...d });

/** A deterministic verifier: the decision depends only on the key and scopes, so both paths get the same. */
function verify(key: string, scopes: readonly string[]): Decision | Promise<Decision> {
  switch (key) {
    case "kw_full": {
      const missing = scopes.filter((s) => !FULL.scopes.includes(s));
      return missing.length ? decision({ code: "insufficient_scope", missingScopes: missing }) : decision({});
    }
    case "kw_bare":
      return scopes.length ? decision({ code: "insufficient_scope", key: BARE, missingScopes: scopes }) : decision({ key: BARE });
    case "kw_limited":
      return decision({ rateLimit: { limit: 10, remaining: 3, resetAt: NOW + 30_500 } });
    case "kw_spent":
      return decision({ code: "rate_limited", rateLimit: { limit: 10, remaining: 0, resetAt: NOW + 5_000 } });
    case "kw_revoked":
      return decision({ code: "revoked" });
    case "kw_async":
      return Promise.resolve(decision({}));
    case "kw_throw":
      throw new Error("driver bug");
    case "kw_down":
      return Promise.reject(unavailable("database unavailable"));
    default:
      return decision({ code: "not_found", key: null });
  }
}

function options(removeCredential: boolean, calls: unknown[]): ExtAuthzOptions {
  return {
    verifier: {
      verify: (key, scopes) => {
        calls.push(["verify", key, [...scopes]]);
        return verify(key, scopes);
      },
    },
    credential: { apiKeyHeader: "x-api-key", acceptBearer: true },
    removeCredential,
    clock: { now: () => NOW },
    onError: (error) => calls.push(["error", String(error)]),
  };
}

const text = fc.oneof(fc.string({ maxLength: 12 }), fc.string({ unit: "grapheme", maxLength: 8 }), fc.string({ unit: "binary", maxLength: 6 }));
const KEYS = ["kw_full", "kw_bare", "kw_limited", "kw_spent", "kw_revoked", "kw_async", "kw_throw", "kw_down", "kw_nope", ""];
const key = fc.constantFrom(...KEYS);
/** A name in random case: Envoy's `headers` keys are lowercase, header_map keys as the client sent them. */
const mixedCase = (s: string) =>
  fc.array(fc.boolean(), { minLength: s.length, maxLength: s.length }).map((up) => [...s].map((c, i) => (up[i] ? c.toUpperCase() : c)).join(""));
const headerName = fc.oneof(
  { weight: 1, arbitrary: fc.constantFrom("x-api-key", "authorization").chain(mixedCase) },
  { weight: 3, arbitrary: fc.constantFrom("x-keyward-key-id", "x-keyward-scopes", "x-keyward-role", "x-keyward-tenant-id").chain(mixedCase) },
  { weight: 4, arbitrary: fc.constantFrom("user-agent", ":path", "accept", "1", "42", "__proto__", "constructor", "") },
  { weight: 4, arbitrary: text },
);
const headerValue = fc.oneof(
  key,
  key.map((k) => ` ${k} `),
  key.map((k) => `Bearer ${k}`),
  key.map((k) => `bearer  ${k}`),
  fc.constantFrom("Basic a2V5OnNlY3JldA==", "", "\ufeffkw_full"),
  text,
);
const encoder = new TextEncoder();
const rawValue = fc.oneof(
  headerValue.map((v) => encoder.encode(v)),
  headerValue.map((v) => new Uint8Array([0xef, 0xbb, 0xbf, ...encoder.encode(v)])), // BOM: dropped from raw_value
  fc.uint8Array({ maxLength: 8 }), // invalid UTF-8 is replaced, never rejected, in bytes
);
const pairs = <T>(value: fc.Arbitrary<T>) => fc.array(fc.tuple(headerName, value), { maxLength: 8 });
/** Own properties even for "__proto__", as protobuf-es builds maps. */
const entriesOf = (entries: [string, string][]) => Object.fromEntries(entries) as Record<string, string>;
const scopesExtension = fc.constantFrom("", "read", "read, write", "write admin", "read,read");

const address = fc.record({
  address: fc.record({
    address: fc.record({
      case: fc.constant("socketAddress" as const),
      value: fc.record({ address: text, portSpecifier: fc.record({ case: fc.constant("portValue" as const), value: fc.nat(65535) }) }),
    }),
  }),
  service: text,
  labels: fc.dictionary(fc.string({ maxLength: 6 }), text, { maxKeys: 3 }),
  principal: text,
  certificate: text,
});
const struct = fc.dictionary(fc.string({ maxLength: 6 }), fc.oneof(text, fc.double({ noNaN: true }), fc.boolean(), fc.constant(null)), { maxKeys: 3 });

const checkInit: fc.Arbitrary<CheckInit> = fc
  .record({
    source: fc.option(address, { nil: undefined }),
    destination: fc.option(address, { nil: undefined }),
    time: fc.option(fc.integer({ min: 0, max: 4_102_444_800_000 }), { nil: undefined }),
    headers: pairs(headerValue),
    // Most requests carry a credential, so most decisions get past missing_key.
    credential: fc.option(
      fc.oneof(
        fc.tuple(mixedCase("x-api-key"), key.map((k) => ` ${k}`)),
        fc.tuple(mixedCase("authorization"), key.map((k) => `Bearer ${k}`)),
      ),
      { freq: 4, nil: undefined },
    ),
    headerMap: fc.option(fc.array(fc.tuple(headerName, fc.oneof(headerValue, fc.constant("")), rawValue), { maxLength: 6 }), { nil: undefined }),
    extensions: pairs(text),
    requiredScopes: fc.option(scopesExtension, { nil: undefined }),
    http: fc.record({
      id: text,
      method: text,
      path: text,
      host: text,
      scheme: text,
      query: text,
      fragment: text,
      size: fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
      protocol: text,
      body: fc.string({ maxLength: 300 }),
      rawBody: fc.uint8Array({ maxLength: 40 }),
    }),
    metadata: fc.option(fc.dictionary(fc.string({ maxLength: 8 }), struct, { maxKeys: 2 }), { nil: undefined }),
    sni: fc.option(text, { nil: undefined }),
    noHttp: fc.nat(9).map((n) => n === 0),
  })
  .map((r) => ({
    attributes: {
      source: r.source,
      destination: r.destination,
      request: {
        time: r.time === undefined ? undefined : timestampFromMs(r.time),
        http: r.noHttp
          ? undefined
          : {
              ...r.http,
              headers: entriesOf(r.credential ? [...r.headers, r.credential] : r.headers),
              headerMap: r.headerMap && { headers: r.headerMap.map(([key, value, rawValue]) => ({ key, value, rawValue })) },
            },
      },
      contextExtensions: entriesOf(r.requiredScopes === undefined ? r.extensions : [...r.extensions, ["required_scopes", r.requiredScopes]]),
      metadataContext: r.metadata && { filterMetadata: r.metadata },
      tlsSession: r.sni === undefined ? undefined : { sni: r.sni },
    },
  }));

const bytesOf = (init: CheckInit) => toBinary(CheckRequestSchema, create(CheckRequestSchema, init));
/** One request, or two concatenated: protobuf merges them (maps joined, repeated fields appended). */
const requestBytes = fc.oneof(
  { weight: 3, arbitrary: checkInit.map(bytesOf) },
  { weight: 1, arbitrary: fc.tuple(checkInit, checkInit).map(([a, b]) => Buffer.concat([bytesOf(a), bytesOf(b)])) },
);

/** The lean decoder's input, compared by content (map order is not wire order in protobuf-es objects). */
const sameInput = (ours: CheckInput, theirs: CheckInput) => {
  expect(new Set(ours.headers.map(([name]) => name)).size).toBe(ours.headers.length);
  expect(new Map(ours.headers)).toEqual(new Map(theirs.headers));
  expect(ours.headerMap).toEqual(theirs.headerMap);
  expect(ours.requiredScopes).toBe(theirs.requiredScopes);
};

function expectInvalidArgument(e: unknown): void {
  expect(e).toBeInstanceOf(KeywardError);
  expect((e as KeywardError).kind).toBe("invalid_argument");
}

describe("check codec", () => {
  it("gives the lean path the same input and the same answer as the protobuf-es message path", async () => {
    await fc.assert(
      fc.asyncProperty(requestBytes, fc.boolean(), async (bytes, removeCredential) => {
        const message = fromBinary(CheckRequestSchema, bytes);
        const input = decodeCheckRequest(bytes);
        sameInput(input, checkInputOf(message));

        const messageCalls: unknown[] = [];
        const leanCalls: unknown[] = [];
        const expected = await createCheckHandler(options(removeCredential, messageCalls))(message);
        const result = await createCheckDecider(options(removeCredential, leanCalls))(input);
        const actual = fromBinary(CheckResponseSchema, encodeCheckResponse(result));
        expect(equals(CheckResponseSchema, actual, expected)).toBe(true);
        expect(leanCalls).toEqual(messageCalls);
      }),
      { numRuns: 1500 },
    );
  });

  const header = fc.tuple(text, text);
  const metadata = fc.uniqueArray(fc.tuple(text.filter((s) => s !== "__proto__"), fc.oneof(text, fc.array(text, { maxLength: 4 }))), {
    selector: (e) => e[0],
    maxLength: 4,
  });
  // Long strings make nested lengths take 2 and 3 bytes.
  const body = fc.oneof(text, fc.string({ minLength: 100, maxLength: 400 }), fc.constant("é".repeat(9000)));
  const allow: fc.Arbitrary<CheckAllow> = fc.record({
    allowed: fc.constant(true as const),
    headers: fc.array(header, { maxLength: 4 }),
    headersToRemove: fc.array(text, { maxLength: 4 }),
    responseHeaders: fc.array(header, { maxLength: 4 }),
    metadata,
  });
  const deny: fc.Arbitrary<CheckDeny> = fc.record({
    allowed: fc.constant(false as const),
    rpcCode: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
    message: body,
    status: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
    headers: fc.array(fc.tuple(text, body), { maxLength: 4 }),
    body,
    metadata,
  });

  it("encodes CheckResponse as protobuf-es decodes it, equal to the message path's", () => {
    fc.assert(
      fc.property(fc.oneof(allow, deny), (result) => {
        const actual = fromBinary(CheckResponseSchema, encodeCheckResponse(result));
        expect(equals(CheckResponseSchema, actual, checkResponseOf(result))).toBe(true);
      }),
      { numRuns: 1500 },
    );
  });

  it("encodes an allow built on a shared one (CheckAllow.base) to the same bytes, with its own response headers", () => {
    fc.assert(
      fc.property(allow, fc.array(header, { maxLength: 4 }), (shared, responseHeaders) => {
        const base: CheckAllow = { ...shared, shared: true };
        const own = { ...shared, responseHeaders };
        // Twice: the second encoding reuses the base's bytes.
        for (let i = 0; i < 2; i++) {
          expect(Buffer.from(encodeCheckResponse({ ...own, base }))).toEqual(Buffer.from(encodeCheckResponse(own)));
          expect(Buffer.from(encodeCheckResponseFrame({ ...own, base })).subarray(5)).toEqual(Buffer.from(encodeCheckResponse(own)));
        }
      }),
      { numRuns: 500 },
    );
  });

  it("encodes exactly the bytes protobuf-es writes for the decision's answers", () => {
    const calls: unknown[] = [];
    const decide = createCheckDecider(options(true, calls));
    for (const headers of [{ "x-api-key": "kw_full", "x-keyward-role": "x" }, { authorization: "Bearer kw_limited" }, { "x-api-key": "kw_revoked" }, {}]) {
      const result = decide({ headers: Object.entries(headers), headerMap: [], requiredScopes: "read" });
      if (result instanceof Promise) throw new Error("expected a synchronous answer");
      expect(Buffer.from(encodeCheckResponse(result))).toEqual(Buffer.from(toBinary(CheckResponseSchema, checkResponseOf(result))));
    }
  });

  it("never throws anything but INVALID_ARGUMENT on random bytes, and agrees with protobuf-es when both accept", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        let ours: CheckInput;
        try {
          ours = decodeCheckRequest(bytes);
        } catch (e) {
          expectInvalidArgument(e);
          return;
        }
        let theirs;
        try {
          theirs = fromBinary(CheckRequestSchema, bytes);
        } catch {
          return;
        }
        sameInput(ours, checkInputOf(theirs));
      }),
      { numRuns: 5000 },
    );
  });

  it("never throws anything but INVALID_ARGUMENT on damaged requests", () => {
    const damage = fc.tuple(requestBytes, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }), fc.constantFrom("set", "cut", "insert")), { minLength: 1, maxLength: 4 }));
    fc.assert(
      fc.property(damage, ([original, edits]) => {
        let bytes = Buffer.from(original);
        for (const [at, value, kind] of edits) {
          const i = bytes.length ? at % bytes.length : 0;
          if (kind === "set" && bytes.length) bytes[i] = value;
          else if (kind === "cut") bytes = bytes.subarray(0, i);
          else bytes = Buffer.concat([bytes.subarray(0, i), Buffer.from([value]), bytes.subarray(i)]);
        }
        try {
          decodeCheckRequest(bytes);
        } catch (e) {
          expectInvalidArgument(e);
        }
      }),
      { numRuns: 3000 },
    );
  });

  // CheckRequest{attributes{request{http{headers{key, value}}}}} around an entry's bytes.
  const wrapHeaderEntry = (entry: number[]) => {
    const nest = (tag: number, inner: number[]) => [tag, inner.length, ...inner];
    return Buffer.from(nest(0x0a, nest(0x22, nest(0x12, nest(0x1a, entry)))));
  };

  it("rejects invalid UTF-8, truncation, wrong wire types and oversized varints", () => {
    expect(() => decodeCheckRequest(wrapHeaderEntry([0x0a, 0x01, 0x61, 0x12, 0x02, 0xc3, 0x28]))).toThrow(/invalid UTF-8/);
    // Truncated: the entry claims more bytes than it has.
    expect(() => decodeCheckRequest(wrapHeaderEntry([0x0a, 0x05, 0x61]))).toThrow(/not a valid envoy.service.auth.v3.CheckRequest/);
    // A child longer than its parent.
    expect(() => decodeCheckRequest(Buffer.from([0x0a, 0x02, 0x22, 0x05, 0, 0, 0, 0, 0]))).toThrow(/not a valid/);
    // attributes as a varint.
    expect(() => decodeCheckRequest(Buffer.from([0x08, 0x01]))).toThrow(/not a valid/);
    // A known field skipped, with the wrong wire type (HttpRequest.path as a varint).
    expect(() => decodeCheckRequest(Buffer.from([0x0a, 0x06, 0x22, 0x04, 0x12, 0x02, 0x20, 0x01]))).toThrow(/not a valid/);
    // An 11-byte varint length, and a tag beyond 32 bits.
    expect(() => decodeCheckRequest(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]))).toThrow(/not a valid/);
    expect(() => decodeCheckRequest(Buffer.from([0xf8, 0xff, 0xff, 0xff, 0x7f, 0x00]))).toThrow(/not a valid/);
    // Field 0, wire types 6 and 7, and an end-group tag outside a group.
    for (const tag of [0x02, 0x0e, 0x0f, 0x14]) expect(() => decodeCheckRequest(Buffer.from([tag, 0x00]))).toThrow(/not a valid/);
  });

  it("keeps one header per name, at its first position with the last value, however many are sent", () => {
    // 50 names: past the linear search, into the index.
    const names = Array.from({ length: 50 }, (_, i) => `x-h${i}`);
    const repeated = names.filter((_, i) => i % 3 === 0);
    const request = (list: string[], value: string) =>
      bytesOf({ attributes: { request: { http: { headers: Object.fromEntries(list.map((n) => [n, value])) } } } });
    const cases = [
      { bytes: Buffer.concat([request(names, "1"), request(repeated, "2")]), order: names },
      { bytes: Buffer.concat([request(repeated, "2"), request(names, "1")]), order: [...repeated, ...names.filter((n) => !repeated.includes(n))] },
    ];
    for (const { bytes, order } of cases) {
      const ours = decodeCheckRequest(bytes);
      sameInput(ours, checkInputOf(fromBinary(CheckRequestSchema, bytes)));
      expect(ours.headers.map(([name]) => name)).toEqual(order);
    }
  });

  it("skips unknown fields of every wire type, groups included, and keeps a BOM in strings but not in raw values", () => {
    const unknown = [0x98, 0x06, 0x96, 0x01, 0x99, 0x06, 1, 2, 3, 4, 5, 6, 7, 8, 0x9d, 0x06, 1, 2, 3, 4, 0x9b, 0x06, 0x08, 0x01, 0x9c, 0x06];
    const bytes = Buffer.concat([Buffer.from(unknown), wrapHeaderEntry([0x0a, 0x01, 0x61, 0x12, 0x03, 0xef, 0xbb, 0xbf])]);
    expect(decodeCheckRequest(bytes).headers).toEqual([["a", "\ufeff"]]);
    expect(() => decodeCheckRequest(Buffer.from([0x9b, 0x06, 0xa4, 0x06]))).toThrow(/not a valid/); // group closed by another field
    const raw = toBinary(
      CheckRequestSchema,
      create(CheckRequestSchema, {
        attributes: { request: { http: { headerMap: { headers: [{ key: "X-Api-Key", rawValue: new Uint8Array([0xef, 0xbb, 0xbf, 0x6b, 0xff]) }] } } } },
      }),
    );
    expect(decodeCheckRequest(raw).headerMap).toEqual([["X-Api-Key", "k\ufffd"]]);
  });
});
