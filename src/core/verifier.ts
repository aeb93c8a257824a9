// The one decision core behind Verify, ext_authz Check and forward-auth.
// Cache hits are answered synchronously (no promise, no allocation beyond the
// decision) because this is the hot path; only misses go to storage.
import type { KeyCache } from "./key-cache.js";
import { isWellFormedKey, type KeyHasher } from "./key-format.js";
import type { CachedKey, Clock } from "./model.js";
import type { RateLimiter, RateLimitState } from "./rate-limiter.js";
import type { UsageRecorder } from "./usage.js";

export type VerifyCode =
  | "valid"
  | "not_found"
  | "revoked"
  | "expired"
  | "disabled"
  | "rate_limited"
  | "insufficient_scope";

export interface Decision {
  code: VerifyCode;
  /** Set when the key exists, whatever the code. */
  key: CachedKey | null;
  /** Set when the key has a rate limit and the check got that far. */
  rateLimit: RateLimitState | null;
  /** Scopes that were required but not held (insufficient_scope only). */
  missingScopes: readonly string[];
}

export interface VerifierOptions {
  cache: KeyCache;
  /** The cache's key for a key: createKeyHasher(pepper, "latin1"). */
  digest: KeyHasher;
  limiter: RateLimiter;
  usage: UsageRecorder;
  clock: Clock;
  /** Called with every decision's code (metrics). */
  onDecision?: (code: VerifyCode) => void;
}

export interface Verifier {
  verify(key: string, requiredScopes: readonly string[]): Decision | Promise<Decision>;
  /** Finds a usable key (exists, not revoked, enabled, not expired) without counting usage. */
  authenticate(key: string): Promise<CachedKey | null>;
}

const NO_SCOPES: readonly string[] = [];
const NOT_FOUND: Decision = Object.freeze({ code: "not_found", key: null, rateLimit: null, missingScopes: NO_SCOPES });

export function createVerifier(options: VerifierOptions): Verifier {
  const { cache, digest, limiter, usage, clock } = options;
  const observe = options.onDecision ?? (() => {});

  function decide(record: CachedKey | null, requiredScopes: readonly string[]): Decision {
    if (record === null) return NOT_FOUND;
    if (record.revoked) return denied("revoked", record);
    if (!record.enabled) return denied("disabled", record);
    const now = clock.now();
    if (record.expiresAt !== null && record.expiresAt <= now) return denied("expired", record);
    if (requiredScopes.length > 0) {
      let missing: string[] | undefined;
      for (const scope of requiredScopes) {
        if (!record.scopes.includes(scope)) (missing ??= []).push(scope);
      }
      if (missing) return { code: "insufficient_scope", key: record, rateLimit: null, missingScopes: missing };
    }
    let rateLimit: RateLimitState | null = null;
    if (record.rateLimit > 0) {
      const taken = limiter.take(record.id, record.rateLimit, record.rateLimitWindowSeconds, now);
      // The limiter's answer is a fresh object per call: it serves as the decision's state as it is.
      rateLimit = taken;
      if (!taken.allowed) return { code: "rate_limited", key: record, rateLimit, missingScopes: NO_SCOPES };
    }
    usage.record(record.id, now);
    return { code: "valid", key: record, rateLimit, missingScopes: NO_SCOPES };
  }

  function lookup(key: string): CachedKey | null | Promise<CachedKey | null> {
    if (!isWellFormedKey(key)) return null;
    const d = digest(key);
    const cached = cache.peek(d);
    return cached !== undefined ? cached : cache.load(d);
  }

  return {
    verify(key, requiredScopes) {
      const found = lookup(key);
      if (found instanceof Promise) {
        return found.then((record) => {
          const decision = decide(record, requiredScopes);
          observe(decision.code);
          return decision;
        });
      }
      const decision = decide(found, requiredScopes);
      observe(decision.code);
      return decision;
    },
    async authenticate(key) {
      const record = await lookup(key);
      if (record === null || record.revoked || !record.enabled) return null;
      if (record.expiresAt !== null && record.expiresAt <= clock.now()) return null;
      return record;
    },
  };
}

function denied(code: VerifyCode, key: CachedKey): Decision {
  return { code, key, rateLimit: null, missingScopes: NO_SCOPES };
}
