// The verification cache: key digest → CachedKey (a hit) or null (a remembered
// miss). Keys are SHA-256 digests as 32-character latin1 strings (see
// createKeyHasher), half the heap of the stored 64-character hex; storage and
// the change feed speak hex, converted here on a miss and on a change.
// Positive and negative entries live in separate LRUs so a flood of unknown
// keys can only churn the negative side, never evict hot keys.
// Concurrent misses for one hash share one load. While storage is failing, a
// key whose entry went stale is still answered from it for a bounded window
// (stale-if-error); unknown keys never are: misses fail closed.
//
// Entries are compact (see CachedKey): one object per key holding the decision
// fields, the packed rest and the cache's own bookkeeping, with tenant ids and
// scope lists shared between keys.
import { LRUCache } from "lru-cache";
import { digestOfHex, hexOfDigest } from "./key-format.js";
import type { CachedKey, KeyPacker, KeyRecord } from "./model.js";

export interface KeyCacheOptions {
  /** Looks a key up by its stored (hex) hash. */
  load: (hash: string) => Promise<KeyRecord | null>;
  /** Packs what a CachedKey keeps besides its decision fields (app.ts: the ApiKey wire bytes). */
  pack: KeyPacker;
  maxEntries: number;
  ttlMs: number;
  /** Defaults to a quarter of maxEntries (at least 1). */
  negativeMaxEntries?: number;
  /** Defaults to min(ttlMs, 60 s): an unknown key may be issued later. */
  negativeTtlMs?: number;
  /** How long past ttlMs an entry may answer while loads fail (0: never). */
  staleIfErrorMs?: number;
  now?: () => number;
}

export interface KeyCacheStats {
  hits: number;
  misses: number;
  loads: number;
  coalesced: number;
  /** Loads that failed and were answered from a stale entry. */
  staleServed: number;
  /** Positive entries pushed out by the size bound. */
  evictions: number;
  size: number;
  negativeSize: number;
}

export interface KeyCache {
  /** The cached answer for a key digest (latin1), or undefined when it is not cached. */
  peek(digest: string): CachedKey | null | undefined;
  /** Loads (once for concurrent callers) and caches the answer. */
  load(digest: string): Promise<CachedKey | null>;
  /** Replaces the cached record after a local change. */
  set(record: KeyRecord): void;
  /** Forgets a key by its stored (hex) hash, as the change feed names it. */
  invalidate(hash: string): void;
  clear(): void;
  stats(): KeyCacheStats;
}

/** A cached key plus the cache's bookkeeping, in one object. */
class Entry implements CachedKey {
  constructor(
    readonly id: string,
    readonly tenantId: string,
    readonly scopes: readonly string[],
    readonly rateLimit: number,
    readonly rateLimitWindowSeconds: number,
    readonly expiresAt: number | null,
    readonly enabled: boolean,
    readonly revoked: boolean,
    readonly lastUsedAt: number | null,
    readonly requestCount: number,
    readonly packed: string,
    /** After a failed reload, the stale entry answers until then without retrying (0: not stale). */
    public retryAt: number,
  ) {}
}

const time = (d: Date | null): number | null => (d === null ? null : d.getTime());

/**
 * Keys of one tenant share its id string, keys with equal scopes one frozen
 * array. Bounded: past this many distinct values a table starts over (entries
 * keep what they already share), so odd data cannot grow it without limit.
 */
const INTERN_MAX = 10_000;

function createInterner<T>(): (key: string, make: () => T) => T {
  let table = new Map<string, T>();
  return (key, make) => {
    let value = table.get(key);
    if (value === undefined) {
      if (table.size >= INTERN_MAX) table = new Map();
      value = make();
      table.set(key, value);
    }
    return value;
  };
}

/** A CachedKey for a record, without the cache (tests; the cache shares strings and scope lists). */
export function toCachedKey(record: KeyRecord, pack: KeyPacker): CachedKey {
  return entryOf(record, pack, record.tenantId, Object.freeze([...record.scopes]));
}

function entryOf(record: KeyRecord, pack: KeyPacker, tenantId: string, scopes: readonly string[]): Entry {
  return new Entry(
    record.id,
    tenantId,
    scopes,
    record.rateLimit,
    record.rateLimitWindowSeconds,
    time(record.expiresAt),
    record.enabled,
    record.revokedAt !== null,
    time(record.lastUsedAt),
    record.requestCount,
    pack(record),
    0,
  );
}

// While storage fails, a stale key is re-tried at most this often.
const STALE_RETRY_MS = 1000;

export function createKeyCache(options: KeyCacheOptions): KeyCache {
  const now = options.now ?? Date.now;
  const internTenant = createInterner<string>();
  const internScopes = createInterner<readonly string[]>();
  const ttlMs = options.ttlMs;
  const staleMs = options.staleIfErrorMs ?? 0;
  const counters = { hits: 0, misses: 0, loads: 0, coalesced: 0, staleServed: 0, evictions: 0 };
  // Entries live ttl + stale window; past ttl they only serve as a fallback.
  // The LRU keeps each entry's load time (a preallocated Float64Array), so the
  // entries need not: a read reports the time left, fresh while more than the
  // stale window remains. It reads the clock on every call (ttlResolution 0),
  // as the freshness check must.
  const positive = new LRUCache<string, Entry>({
    max: options.maxEntries,
    ttl: ttlMs + staleMs,
    ttlResolution: 0,
    ttlAutopurge: false,
    updateAgeOnGet: false,
    perf: { now },
    dispose: (_value, _key, reason) => {
      if (reason === "evict") counters.evictions++;
    },
  });
  const negativeMax = Math.max(1, options.negativeMaxEntries ?? Math.floor(options.maxEntries / 4));
  const negative = new LRUCache<string, true>({
    max: negativeMax,
    ttl: options.negativeTtlMs ?? Math.min(options.ttlMs, 60_000),
    ttlResolution: 0,
    updateAgeOnGet: false,
    perf: { now },
  });
  // One status object, reused: peek is synchronous.
  const status: LRUCache.Status<string, Entry> = {};
  const withStatus: LRUCache.GetOptions<string, Entry, unknown> = { status };
  const inflight = new Map<string, Promise<CachedKey | null>>();

  function compact(record: KeyRecord): Entry {
    const tenantId = internTenant(record.tenantId, () => record.tenantId);
    const scopes = internScopes(JSON.stringify(record.scopes), () => Object.freeze([...record.scopes]));
    return entryOf(record, options.pack, tenantId, scopes);
  }

  function store(digest: string, entry: Entry | null): void {
    if (entry) {
      negative.delete(digest);
      positive.set(digest, entry);
    } else {
      positive.delete(digest);
      negative.set(digest, true);
    }
  }

  return {
    peek(digest) {
      // Unset unless the read finds the entry: then it counts as stale (a reload), never as fresh.
      status.remainingTTL = undefined;
      const entry = positive.get(digest, withStatus);
      if (entry !== undefined) {
        if (status.remainingTTL! > staleMs || (entry.retryAt !== 0 && now() < entry.retryAt)) {
          counters.hits++;
          return entry;
        }
      }
      if (negative.get(digest) !== undefined) {
        counters.hits++;
        return null;
      }
      counters.misses++;
      return undefined;
    },
    load(digest) {
      const pending = inflight.get(digest);
      if (pending) {
        counters.coalesced++;
        return pending;
      }
      counters.loads++;
      const promise: Promise<CachedKey | null> = options.load(hexOfDigest(digest)).then(
        (record) => {
          const entry = record && compact(record);
          // A local change or invalidation during the load wins over what the load saw.
          if (inflight.get(digest) === promise) {
            inflight.delete(digest);
            store(digest, entry);
          }
          return entry;
        },
        (error: unknown) => {
          if (inflight.get(digest) === promise) inflight.delete(digest);
          const stale = positive.get(digest);
          if (stale === undefined) throw error;
          counters.staleServed++;
          stale.retryAt = now() + STALE_RETRY_MS;
          return stale;
        },
      );
      inflight.set(digest, promise);
      return promise;
    },
    set(record) {
      const digest = digestOfHex(record.hash);
      inflight.delete(digest);
      store(digest, compact(record));
    },
    invalidate(hash) {
      const digest = digestOfHex(hash);
      inflight.delete(digest);
      positive.delete(digest);
      negative.delete(digest);
    },
    clear() {
      inflight.clear();
      positive.clear();
      negative.clear();
    },
    stats() {
      return { ...counters, size: positive.size, negativeSize: negative.size };
    },
  };
}
