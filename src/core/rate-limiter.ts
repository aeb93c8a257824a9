// Per-key fixed windows, in memory on this instance. A window opens at a key's
// first counted request and resets `windowSeconds` later, which gives callers
// an exact reset time to report.

export interface RateLimitState {
  limit: number;
  remaining: number;
  /** Epoch ms when the current window ends. */
  resetAt: number;
}

export interface RateLimiter {
  /** Counts one request; `allowed` false when the window's budget is spent. */
  take(keyId: string, limit: number, windowSeconds: number, now: number): RateLimitState & { allowed: boolean };
  /** Drops windows that have ended (bounded memory). */
  sweep(now: number): void;
  size(): number;
}

interface Window {
  start: number;
  resetAt: number;
  used: number;
  limit: number;
}

export function createRateLimiter(): RateLimiter {
  const windows = new Map<string, Window>();
  return {
    take(keyId, limit, windowSeconds, now) {
      let w = windows.get(keyId);
      const windowMs = windowSeconds * 1000;
      // A changed window length (UpdateKey) starts a fresh window.
      if (w === undefined || now >= w.resetAt || w.resetAt - w.start !== windowMs) {
        w = { start: now, resetAt: now + windowMs, used: 0, limit };
        windows.set(keyId, w);
      }
      w.limit = limit;
      if (w.used >= limit) return { allowed: false, limit, remaining: 0, resetAt: w.resetAt };
      w.used++;
      return { allowed: true, limit, remaining: limit - w.used, resetAt: w.resetAt };
    },
    sweep(now) {
      for (const [id, w] of windows) if (now >= w.resetAt) windows.delete(id);
    },
    size: () => windows.size,
  };
}
