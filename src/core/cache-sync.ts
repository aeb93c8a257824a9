// Keeps this instance's verification cache honest when keys change elsewhere.
// Storage implements a KeyChangeFeed (PostgreSQL LISTEN/NOTIFY); this module
// decides what each event means for the cache. The cache TTL stays the hard
// upper bound: if every notification is lost, entries still expire.
import type { KeyCache } from "./key-cache.js";

/** What a change feed reports. Events arrive only for committed changes. */
export interface KeyChangeListener {
  /** The stored records behind these key hashes changed (revoke, update, issue). */
  keysChanged(hashes: readonly string[]): void;
  /**
   * Listening (re)started after `downMs` without it; notifications sent meanwhile
   * are lost. `initial` marks the first connection since start.
   */
  resumed(gap: { downMs: number; initial: boolean }): void;
  /** A notification could not be interpreted: assume anything may have changed. */
  unknownChange(reason: string): void;
}

export interface ChangeFeedStats {
  /** True while the listening connection is up and LISTEN is in effect. */
  listening: boolean;
  notifications: number;
  reconnects: number;
  /** Milliseconds of the last gap in listening (0 before any). */
  lastGapMs: number;
}

export interface KeyChangeFeed {
  /** Starts listening; resolves after the first attempt (it keeps retrying in the background). */
  start(listener: KeyChangeListener): Promise<void>;
  stop(): Promise<void>;
  stats(): ChangeFeedStats;
}

export interface CacheSyncStats {
  /** Hashes evicted because a notification named them. */
  evictions: number;
  /** Whole-cache clears after a gap in listening or an unreadable notification. */
  clears: number;
}

export interface CacheSyncOptions {
  cache: KeyCache;
  /** Called after each whole-cache clear, to log it. */
  onClear?: (info: { reason: "gap" | "unknown_change"; downMs: number; entries: number; detail?: string }) => void;
}

export interface CacheSync extends KeyChangeListener {
  stats(): CacheSyncStats;
}

export function createCacheSync(options: CacheSyncOptions): CacheSync {
  const { cache } = options;
  const counters: CacheSyncStats = { evictions: 0, clears: 0 };

  function entries(): number {
    const s = cache.stats();
    return s.size + s.negativeSize;
  }

  return {
    keysChanged(hashes) {
      // Evicting (rather than reloading) costs the next Verify one query and
      // cannot race with a newer local cache.set: the load re-reads committed state.
      for (const hash of hashes) cache.invalidate(hash);
      counters.evictions += hashes.length;
    },
    resumed({ downMs, initial }) {
      const held = entries();
      // Always drop in-flight loads too: one may have read before LISTEN took effect.
      cache.clear();
      // An empty cache at the first connection missed nothing; anything else is a gap.
      if (initial && held === 0) return;
      counters.clears++;
      options.onClear?.({ reason: "gap", downMs, entries: held });
    },
    unknownChange(reason) {
      const held = entries();
      cache.clear();
      counters.clears++;
      options.onClear?.({ reason: "unknown_change", downMs: 0, entries: held, detail: reason });
    },
    stats() {
      return { ...counters };
    },
  };
}
