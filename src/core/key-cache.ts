// The verification cache: key hash → KeyRecord (a hit) or null (a remembered
// miss). Positive and negative entries live in separate LRUs so a flood of
// unknown keys can only churn the negative side, never evict hot keys.
// Concurrent misses for one hash share one load. While storage is failing, a
// key whose entry went stale is still answered from it for a bounded window
// (stale-if-error); unknown keys never are: misses fail closed.
import { LRUCache } from "lru-cache";
import type { KeyRecord } from "./model.js";

export interface KeyCacheOptions {
  load: (hash: string) => Promise<KeyRecord | null>;
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
  peek(hash: string): KeyRecord | null | undefined;
  /** Loads (once for concurrent callers) and caches the answer. */
  load(hash: string): Promise<KeyRecord | null>;
  /** Replaces the cached record after a local change. */
  set(record: KeyRecord): void;
  invalidate(hash: string): void;
  clear(): void;
  stats(): KeyCacheStats;
}

interface Entry {
  record: KeyRecord;
  loadedAt: number;
  /** After a failed reload, the stale entry answers until then without retrying. */
  retryAt: number;
}

// While storage fails, a stale key is re-tried at most this often.
const STALE_RETRY_MS = 1000;

export function createKeyCache(options: KeyCacheOptions): KeyCache {
  const now = options.now ?? Date.now;
  const ttlMs = options.ttlMs;
  const counters = { hits: 0, misses: 0, loads: 0, coalesced: 0, staleServed: 0, evictions: 0 };
  // Entries live ttl + stale window; past ttl they only serve as a fallback.
  const positive = new LRUCache<string, Entry>({
    max: options.maxEntries,
    ttl: ttlMs + (options.staleIfErrorMs ?? 0),
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
    updateAgeOnGet: false,
    perf: { now },
  });
  const inflight = new Map<string, Promise<KeyRecord | null>>();

  function store(hash: string, record: KeyRecord | null): void {
    if (record) {
      // One string for the LRU key and the record (100k keys × 64 hex chars each add up).
      record.hash = hash;
      negative.delete(hash);
      positive.set(hash, { record, loadedAt: now(), retryAt: 0 });
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
          return entry.record;
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
      const promise = options.load(hash).then(
        (record) => {
          // A local change or invalidation during the load wins over what the load saw.
          if (inflight.get(hash) === promise) {
            inflight.delete(hash);
            store(hash, record);
          }
          return record;
        },
        (error: unknown) => {
          if (inflight.get(hash) === promise) inflight.delete(hash);
          const stale = positive.get(hash);
          if (stale === undefined) throw error;
          counters.staleServed++;
          stale.retryAt = now() + STALE_RETRY_MS;
          return stale.record;
        },
      );
      inflight.set(hash, promise);
      return promise;
    },
    set(record) {
      inflight.delete(record.hash);
      store(record.hash, record);
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
