// The verification cache: key hash → KeyRecord (a hit) or null (a remembered
// miss). Positive and negative entries live in separate LRUs so a flood of
// unknown keys can only churn the negative side, never evict hot keys.
// Concurrent misses for one hash share one load.
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
}

export interface KeyCacheStats {
  hits: number;
  misses: number;
  loads: number;
  coalesced: number;
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

export function createKeyCache(options: KeyCacheOptions): KeyCache {
  const positive = new LRUCache<string, KeyRecord>({
    max: options.maxEntries,
    ttl: options.ttlMs,
    ttlAutopurge: false,
    updateAgeOnGet: false,
  });
  const negativeMax = Math.max(1, options.negativeMaxEntries ?? Math.floor(options.maxEntries / 4));
  const negative = new LRUCache<string, true>({
    max: negativeMax,
    ttl: options.negativeTtlMs ?? Math.min(options.ttlMs, 60_000),
    updateAgeOnGet: false,
  });
  const inflight = new Map<string, Promise<KeyRecord | null>>();
  const counters = { hits: 0, misses: 0, loads: 0, coalesced: 0 };

  function store(hash: string, record: KeyRecord | null): void {
    if (record) {
      negative.delete(hash);
      positive.set(hash, record);
    } else {
      positive.delete(hash);
      negative.set(hash, true);
    }
  }

  return {
    peek(hash) {
      const record = positive.get(hash);
      if (record !== undefined) {
        counters.hits++;
        return record;
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
          throw error;
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
