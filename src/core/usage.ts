// Usage counts (request_count, last_used_at) are kept in memory and written
// behind in batches, so Verify never writes to the database. A failed flush
// keeps its counts for the next one; nothing is counted twice because a batch
// is merged back only when its transaction did not commit.
import type { KeyStore, UsageDelta } from "./model.js";

export interface UsageRecorderOptions {
  store: Pick<KeyStore, "addUsage">;
  /** Called with a failed flush's error; counts stay pending. */
  onFlushError?: (error: unknown, pendingKeys: number) => void;
  /**
   * Upper bound on distinct keys held while flushes fail; beyond it the
   * newest keys' counts are dropped (and reported through onDrop).
   */
  maxPendingKeys?: number;
  onDrop?: (count: number) => void;
}

export interface PendingUsage {
  count: number;
  lastUsedAt: number;
}

export interface UsageRecorder {
  record(keyId: string, now: number): void;
  pending(keyId: string): PendingUsage | undefined;
  pendingKeys(): number;
  /** Writes everything pending; concurrent calls are serialised. */
  flush(): Promise<void>;
}

export function createUsageRecorder(options: UsageRecorderOptions): UsageRecorder {
  const maxPending = options.maxPendingKeys ?? 1_000_000;
  let current = new Map<string, PendingUsage>();
  // Counts of the batch being written; still visible to pending() meanwhile.
  let writing: Map<string, PendingUsage> | undefined;
  let chain: Promise<void> = Promise.resolve();

  function merge(into: Map<string, PendingUsage>, id: string, usage: PendingUsage): boolean {
    const existing = into.get(id);
    if (existing) {
      existing.count += usage.count;
      if (usage.lastUsedAt > existing.lastUsedAt) existing.lastUsedAt = usage.lastUsedAt;
      return true;
    }
    if (into.size >= maxPending) return false;
    into.set(id, { count: usage.count, lastUsedAt: usage.lastUsedAt });
    return true;
  }

  async function writeOnce(): Promise<void> {
    if (current.size === 0) return;
    const batch = current;
    current = new Map();
    writing = batch;
    const deltas: UsageDelta[] = [];
    for (const [id, u] of batch) deltas.push({ id, count: u.count, lastUsedAt: new Date(u.lastUsedAt) });
    try {
      await options.store.addUsage(deltas);
    } catch (error) {
      let dropped = 0;
      for (const [id, u] of batch) if (!merge(current, id, u)) dropped += u.count;
      if (dropped > 0) options.onDrop?.(dropped);
      options.onFlushError?.(error, current.size);
      throw error;
    } finally {
      writing = undefined;
    }
  }

  return {
    record(keyId, now) {
      const u = current.get(keyId);
      if (u) {
        u.count++;
        if (now > u.lastUsedAt) u.lastUsedAt = now;
      } else if (current.size < maxPending) {
        current.set(keyId, { count: 1, lastUsedAt: now });
      } else {
        options.onDrop?.(1);
      }
    },
    pending(keyId) {
      const a = current.get(keyId);
      const b = writing?.get(keyId);
      if (!b) return a;
      if (!a) return b;
      return { count: a.count + b.count, lastUsedAt: Math.max(a.lastUsedAt, b.lastUsedAt) };
    },
    pendingKeys: () => current.size + (writing?.size ?? 0),
    flush() {
      const next = chain.then(writeOnce);
      chain = next.catch(() => {});
      return next;
    },
  };
}
