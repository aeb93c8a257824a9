// The verification cache: key hash → CachedKey (a hit) or null (a remembered
// miss). Positive and negative entries live in separate LRUs so a flood of
// unknown keys can only churn the negative side, never evict hot keys.
// Concurrent misses for one hash share one load. While storage is failing, a
// key whose entry went stale is still answered from it for a bounded window
// (stale-if-error); unknown keys never are: misses fail closed.
//
// Entries are compact (see CachedKey): one object per key holding the decision
// fields, the packed rest and the cache's own bookkeeping, with tenant ids and
// scope lists shared between keys.
import { LRUCache } from "lru-cache";
import type { CachedKey, KeyPacker, KeyRecord } from "./model.js";

export interface KeyCacheOptions {
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
  /** The cached answer, or undefined when the hash is not cached. */
  peek(hash: string): CachedKey | null | undefined;
  /** Loads (once for concurrent callers) and caches the answer. */
  load(hash: string): Promise<CachedKey | null>;
  /** Replaces the cached record after a local change. */
  set(record: KeyRecord): void;
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
    /** Load time relative to the cache's creation: a small integer, so no heap number per key. */
    public loadedAt: number,
    /** After a failed reload, the stale entry answers until then without retrying (same base). */
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
  return entryOf(record, pack, record.tenantId, Object.freeze([...record.scopes]), 0);
}

function entryOf(record: KeyRecord, pack: KeyPacker, tenantId: string, scopes: readonly string[], loadedAt: number): Entry {
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
    loadedAt,
    0,
  );
}

// While storage fails, a stale key is re-tried at most this often.
const STALE_RETRY_MS = 1000;

export function createKeyCache(options: KeyCacheOptions): KeyCache {
  const clock = options.now ?? Date.now;
  // Entry times count from here (see Entry.loadedAt).
  const epoch = clock();
  const now = () => clock() - epoch;
  const internTenant = createInterner<string>();
  const internScopes = createInterner<readonly string[]>();
  const ttlMs = options.ttlMs;
  const counters = { hits: 0, misses: 0, loads: 0, coalesced: 0, staleServed: 0, evictions: 0 };
  // Entries live ttl + stale window; past ttl they only serve as a fallback.
  const positive = new LRUCache<string, Entry>({
    max: options.maxEntries,
    ttl: ttlMs + (options.staleIfErrorMs ?? 0),
    ttlAutopurge: false,
    updateAgeOnGet: false,
    perf: { now: clock },
    dispose: (_value, _key, reason) => {
      if (reason === "evict") counters.evictions++;
    },
  });
  const negativeMax = Math.max(1, options.negativeMaxEntries ?? Math.floor(options.maxEntries / 4));
  const negative = new LRUCache<string, true>({
    max: negativeMax,
    ttl: options.negativeTtlMs ?? Math.min(options.ttlMs, 60_000),
    updateAgeOnGet: false,
    perf: { now: clock },
  });
  const inflight = new Map<string, Promise<CachedKey | null>>();

  function compact(record: KeyRecord): Entry {
    const tenantId = internTenant(record.tenantId, () => record.tenantId);
    const scopes = internScopes(JSON.stringify(record.scopes), () => Object.freeze([...record.scopes]));
    return entryOf(record, options.pack, tenantId, scopes, now());
  }

  function store(hash: string, entry: Entry | null): void {
    if (entry) {
      negative.delete(hash);
      positive.set(hash, entry);
    } else {
      positive.delete(hash);
      negative.set(hash, true);
    }
  }

  return {
    peek(hash) {
      const entry = positive.get(hash);
      if (entry !== undefined) {
        const t = now();
        if (t - entry.loadedAt < ttlMs || t < entry.retryAt) {
          counters.hits++;
          return entry;
        }
      }
      if (negative.get(hash) !== undefined) {
        counters.hits++;
        return null;
      }
      counters.misses++;
      return undefined;
    },
    load(hash) {
      const pending = inflight.get(hash);
      if (pending) {
        counters.coalesced++;
        return pending;
      }
      counters.loads++;
      const promise: Promise<CachedKey | null> = options.load(hash).then(
        (record) => {
          const entry = record && compact(record);
          // A local change or invalidation during the load wins over what the load saw.
          if (inflight.get(hash) === promise) {
            inflight.delete(hash);
            store(hash, entry);
          }
          return entry;
        },
        (error: unknown) => {
          if (inflight.get(hash) === promise) inflight.delete(hash);
          const stale = positive.get(hash);
          if (stale === undefined) throw error;
          counters.staleServed++;
          stale.retryAt = now() + STALE_RETRY_MS;
          return stale;
        },
      );
      inflight.set(hash, promise);
      return promise;
    },
    set(record) {
      inflight.delete(record.hash);
      store(record.hash, compact(record));
    },
    invalidate(hash) {
      inflight.delete(hash);
      positive.delete(hash);
      negative.delete(hash);
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
