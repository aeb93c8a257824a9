// Builds the real core (cache, verifier, managers) over in-memory stores.
import { createAuthenticator, type Principal } from "../../src/core/auth.js";
import { createKeyCache } from "../../src/core/key-cache.js";
import { createKeyHasher } from "../../src/core/key-format.js";
import { createKeyManager, type IssueInput } from "../../src/core/keys.js";
import { createRateLimiter } from "../../src/core/rate-limiter.js";
import { createSettingsManager } from "../../src/core/settings.js";
import { createUsageRecorder } from "../../src/core/usage.js";
import { createVerifier } from "../../src/core/verifier.js";
import { packApiKey } from "../../src/transport/verify-codec.js";
import { createManualClock, createMemoryStores } from "./memory-store.js";

export const ADMIN: Principal = { kind: "admin", actor: "admin" };
export const ADMIN_TOKEN = "test-admin-token-0123456789abcdef";

export function createCore(options: { ttlMs?: number; maxEntries?: number } = {}) {
  const stores = createMemoryStores();
  const clock = createManualClock();
  const cache = createKeyCache({
    load: (hash) => stores.keys.findByHash(hash),
    pack: packApiKey,
    maxEntries: options.maxEntries ?? 1000,
    ttlMs: options.ttlMs ?? 60_000,
  });
  const hasher = createKeyHasher();
  const limiter = createRateLimiter();
  const usage = createUsageRecorder({ store: stores.keys });
  const verifier = createVerifier({ cache, digest: createKeyHasher(undefined, "latin1"), limiter, usage, clock });
  const keys = createKeyManager({ store: stores.keys, cache, hasher, clock });
  const settings = createSettingsManager({ store: stores.settings, clock });
  const auth = createAuthenticator({ adminToken: ADMIN_TOKEN, verifier });
  return { stores, clock, cache, hasher, limiter, usage, verifier, keys, settings, auth };
}

export function issueInput(overrides: Partial<IssueInput> = {}): IssueInput {
  return {
    tenantId: "acme",
    name: "test key",
    nameAr: "",
    scopes: [],
    rateLimit: 0,
    rateLimitWindowSeconds: 0,
    expiresAt: null,
    metadata: {},
    prefix: "",
    ...overrides,
  };
}
