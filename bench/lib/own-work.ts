// The lean path's Verify and Check methods built from the real core (key
// cache, verifier, rate limiter, usage recorder) around one cached key with a
// rate limit, as the bench's hot keys have, and the stages of a cache hit on
// the bytes the bench sends: what `npm run bench:micro` times.
import { createKeyCache } from "../../src/core/key-cache.js";
import { createKeyHasher, generateKey } from "../../src/core/key-format.js";
import { systemClock, type KeyRecord } from "../../src/core/model.js";
import { createRateLimiter } from "../../src/core/rate-limiter.js";
import { createUsageRecorder } from "../../src/core/usage.js";
import { createVerifier } from "../../src/core/verifier.js";
import { createCheckMethod } from "../../src/transport/ext-authz.js";
import type { UnaryMethod } from "../../src/transport/grpc-unary.js";
import { createVerifyMethod } from "../../src/transport/key-service.js";
import { packApiKey } from "../../src/transport/verify-codec.js";
import { checkBody, verifyBody } from "./requests.js";

export interface OwnWorkCase {
  rpc: "Verify" | "Check" | "both";
  stage: string;
  run: () => unknown;
}

export interface OwnWork {
  cases: OwnWorkCase[];
  /** One whole call (decode, decide, encode) as the lean path makes it: the gRPC frame answered. */
  verifyFrame(): Buffer;
  checkFrame(): Buffer;
}

const SCOPES = ["bench:read"];

export function createOwnWork(): OwnWork {
  const { key } = generateKey();
  const now = new Date();
  const record: KeyRecord = {
    id: "key_bench_micro",
    tenantId: "bench",
    name: "bench key",
    nameAr: "",
    prefix: key.slice(0, 7),
    hash: createKeyHasher()(key),
    scopes: SCOPES,
    // As the bench's hot keys: limited, so every hit counts and reports the window.
    rateLimit: 2_000_000_000,
    rateLimitWindowSeconds: 60,
    expiresAt: null,
    createdAt: now,
    updatedAt: now,
    lastUsedAt: null,
    requestCount: 0,
    enabled: true,
    revokedAt: null,
    revokedReason: "",
    createdBy: "bench",
    metadata: {},
  };

  const cache = createKeyCache({ load: () => Promise.resolve(record), pack: packApiKey, maxEntries: 1_000, ttlMs: 3_600_000 });
  cache.set(record);
  // Counts pile up unflushed: nothing here writes.
  const usage = createUsageRecorder({ store: { addUsage: () => Promise.resolve() } });
  const digest = createKeyHasher(undefined, "latin1");
  const verifier = createVerifier({ cache, digest, limiter: createRateLimiter(), usage, clock: systemClock });
  const verify = createVerifyMethod({ verifier, usage });
  const check = createCheckMethod({ verifier, credential: { apiKeyHeader: "x-api-key", acceptBearer: true }, removeCredential: true, clock: systemClock });
  const noHeaders = {};

  // The payloads h2load sends, without the 5-byte gRPC prefix.
  const verifyPayload = verifyBody(key, SCOPES).subarray(5);
  const checkPayload = checkBody(key, SCOPES).subarray(5);

  const whole = (method: UnaryMethod, payload: Uint8Array): Buffer => method.encodeFrame!(method.handle(method.decode(payload), noHeaders));
  function stages(rpc: "Verify" | "Check", method: UnaryMethod, payload: Uint8Array): OwnWorkCase[] {
    const input = method.decode(payload);
    const result = method.handle(input, noHeaders);
    if (result instanceof Promise) throw new Error(`${method.path}: the key is not a cache hit`);
    const frame = method.encodeFrame!(result);
    if (frame.length <= 5) throw new Error(`${method.path}: empty answer`);
    return [
      { rpc, stage: "decode", run: () => method.decode(payload) },
      { rpc, stage: "decide (handle)", run: () => method.handle(input, noHeaders) },
      { rpc, stage: "encode (frame)", run: () => method.encodeFrame!(result) },
      { rpc, stage: "all three", run: () => whole(method, payload) },
    ];
  }

  return {
    cases: [
      ...stages("Verify", verify, verifyPayload),
      ...stages("Check", check, checkPayload),
      { rpc: "both", stage: "SHA-256 of the key (the cache's key)", run: () => digest(key) },
      { rpc: "both", stage: "cache peek", run: () => cache.peek(digest(key)) },
    ],
    verifyFrame: () => whole(verify, verifyPayload),
    checkFrame: () => whole(check, checkPayload),
  };
}
