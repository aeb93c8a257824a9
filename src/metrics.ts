// Prometheus metrics (prom-client), served at GET /metrics. The hot path only
// bumps plain counters and one histogram; everything that already has a
// stats() source (cache, usage, database, change feed) is read at scrape time.
// Labels are bounded: result codes, gRPC codes and registered method names —
// never a key id or tenant id.
import { readFileSync } from "node:fs";
import { Counter, Gauge, Registry, collectDefaultMetrics } from "prom-client";
import type { KeyCacheStats } from "./core/key-cache.js";
import type { VerifyCode } from "./core/verifier.js";

export interface UsageStats {
  pendingKeys: number;
  flushes: number;
  flushFailures: number;
  /** Epoch ms of the last successful flush (process start before the first). */
  lastFlushAt: number;
  dropped: number;
}

export interface MetricsSources {
  cache(): KeyCacheStats;
  usage(): UsageStats;
  database(): { up: boolean; pool?: { total: number; idle: number; waiting: number } };
  rateLimitWindows(): number;
  changeFeed?(): { listening: boolean; notifications: number; reconnects: number; evictions: number; clears: number };
  /** Where malloc_trim runs after full GCs (src/memory-trim.ts). */
  mallocTrim?(): { trims: number; totalMs: number };
  /** Full GCs keyward ran once idle (src/idle-gc.ts). */
  idleGc?(): { collections: number; totalMs: number };
}

export interface Metrics {
  readonly registry: Registry;
  /** One verification decision (Verify, Check or forward-auth). */
  decision(code: VerifyCode): void;
  /** One finished RPC or HTTP call: method path, gRPC status code, duration. */
  call(method: string, code: number, seconds: number): void;
  render(): Promise<{ contentType: string; body: string }>;
}

const GRPC_CODES = [
  "ok", "canceled", "unknown", "invalid_argument", "deadline_exceeded", "not_found", "already_exists",
  "permission_denied", "resource_exhausted", "failed_precondition", "aborted", "out_of_range",
  "unimplemented", "internal", "unavailable", "data_loss", "unauthenticated",
];

const DURATION_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5];

interface CallValue {
  metricName?: string;
  value: number;
  labels: Record<string, string | number>;
}

interface MethodStats {
  codes: number[];
  /** Per bucket (not cumulative); the last slot is +Inf. */
  buckets: number[];
  sum: number;
  count: number;
}

/**
 * Per-call counts and latency on the hot path cost a few array writes; the
 * Prometheus shapes (counter by method and code, histogram by method) are
 * built only when scraped. prom-client's labelled inc/observe hash their label
 * objects on every call, which shows in a profile at ~20k calls/s.
 */
function createCallStats(registry: Registry): { record(method: string, code: number, seconds: number): void } {
  const byMethod = new Map<string, MethodStats>();
  const requestsName = "keyward_rpc_requests_total";
  const durationName = "keyward_rpc_duration_seconds";
  const requestsHelp = "Finished calls by method and gRPC status code.";
  const durationHelp = "Call latency by method, from request headers to the last byte handed to the socket.";
  registry.registerMetric({
    name: requestsName,
    help: requestsHelp,
    type: "counter",
    async get() {
      const values: CallValue[] = [];
      for (const [method, stats] of byMethod) {
        stats.codes.forEach((n, code) => {
          if (n > 0) values.push({ value: n, labels: { method, code: GRPC_CODES[code] ?? "unknown" } });
        });
      }
      return { name: requestsName, help: requestsHelp, type: "counter", aggregator: "sum", values };
    },
    reset() {
      byMethod.clear();
    },
  } as never);
  registry.registerMetric({
    name: durationName,
    help: durationHelp,
    type: "histogram",
    async get() {
      const values: CallValue[] = [];
      for (const [method, stats] of byMethod) {
        let cumulative = 0;
        DURATION_BUCKETS.forEach((le, i) => {
          cumulative += stats.buckets[i]!;
          values.push({ metricName: `${durationName}_bucket`, value: cumulative, labels: { le, method } });
        });
        values.push({ metricName: `${durationName}_bucket`, value: stats.count, labels: { le: "+Inf", method } });
        values.push({ metricName: `${durationName}_sum`, value: stats.sum, labels: { method } });
        values.push({ metricName: `${durationName}_count`, value: stats.count, labels: { method } });
      }
      return { name: durationName, help: durationHelp, type: "histogram", aggregator: "sum", values };
    },
    reset() {
      byMethod.clear();
    },
  } as never);
  return {
    record(method, code, seconds) {
      let stats = byMethod.get(method);
      if (stats === undefined) {
        stats = { codes: new Array<number>(GRPC_CODES.length).fill(0), buckets: new Array<number>(DURATION_BUCKETS.length + 1).fill(0), sum: 0, count: 0 };
        byMethod.set(method, stats);
      }
      if (code >= 0 && code < GRPC_CODES.length) stats.codes[code]!++;
      let i = 0;
      while (i < DURATION_BUCKETS.length && seconds > DURATION_BUCKETS[i]!) i++;
      stats.buckets[i]!++;
      stats.sum += seconds;
      stats.count++;
    },
  };
}

function packageVersion(): string {
  try {
    return (JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string }).version;
  } catch {
    return "unknown";
  }
}

/** Counter that reports a monotonic value read from elsewhere at scrape time. */
function mirrored(registry: Registry, name: string, help: string, read: () => number): void {
  let reported = 0;
  new Counter({
    name,
    help,
    registers: [registry],
    collect() {
      const value = read();
      if (value > reported) this.inc(value - reported);
      reported = Math.max(reported, value);
    },
  });
}

export function createMetrics(sources: MetricsSources): Metrics {
  const registry = new Registry();
  // Standard process_* and nodejs_* names, as dashboards expect them.
  collectDefaultMetrics({ register: registry });

  new Gauge({ name: "keyward_build_info", help: "Build information (always 1).", labelNames: ["version", "node"], registers: [registry] })
    .labels({ version: packageVersion(), node: process.versions.node })
    .set(1);

  const decisions = new Map<VerifyCode, number>();
  let reportedDecisions = new Map<VerifyCode, number>();
  new Counter({
    name: "keyward_decisions_total",
    help: "Verification decisions (Verify, ext_authz Check, forward-auth) by result.",
    labelNames: ["result"],
    registers: [registry],
    collect() {
      for (const [result, n] of decisions) {
        const delta = n - (reportedDecisions.get(result) ?? 0);
        if (delta > 0) this.inc({ result }, delta);
      }
      reportedDecisions = new Map(decisions);
    },
  });

  const calls = createCallStats(registry);

  mirrored(registry, "keyward_cache_hits_total", "Verification cache hits (positive and negative).", () => sources.cache().hits);
  mirrored(registry, "keyward_cache_misses_total", "Verification cache misses.", () => sources.cache().misses);
  mirrored(registry, "keyward_cache_loads_total", "Database lookups made for cache misses.", () => sources.cache().loads);
  mirrored(registry, "keyward_cache_coalesced_total", "Misses that joined a lookup already in flight.", () => sources.cache().coalesced);
  mirrored(registry, "keyward_cache_evictions_total", "Entries evicted to stay within KEYWARD_CACHE_MAX_ENTRIES.", () => sources.cache().evictions);
  mirrored(registry, "keyward_cache_stale_served_total", "Lookups answered from a stale entry while the database failed.", () => sources.cache().staleServed);
  new Gauge({
    name: "keyward_cache_entries",
    help: "Cached keys: positive (known keys) and negative (remembered unknown keys).",
    labelNames: ["kind"],
    registers: [registry],
    collect() {
      const s = sources.cache();
      this.set({ kind: "positive" }, s.size);
      this.set({ kind: "negative" }, s.negativeSize);
    },
  });
  new Gauge({
    name: "keyward_rate_limit_windows",
    help: "Open per-key rate-limit windows on this instance.",
    registers: [registry],
    collect() {
      this.set(sources.rateLimitWindows());
    },
  });

  new Gauge({
    name: "keyward_usage_pending_keys",
    help: "Keys with usage counted in memory and not yet written.",
    registers: [registry],
    collect() {
      this.set(sources.usage().pendingKeys);
    },
  });
  new Gauge({
    name: "keyward_usage_flush_lag_seconds",
    help: "Seconds since usage counts were last written successfully.",
    registers: [registry],
    collect() {
      this.set((Date.now() - sources.usage().lastFlushAt) / 1000);
    },
  });
  mirrored(registry, "keyward_usage_flushes_total", "Successful usage flushes.", () => sources.usage().flushes);
  mirrored(registry, "keyward_usage_flush_failures_total", "Failed usage flushes (counts kept for the next one).", () => sources.usage().flushFailures);
  mirrored(registry, "keyward_usage_dropped_total", "Usage counts dropped because the pending buffer was full.", () => sources.usage().dropped);

  new Gauge({
    name: "keyward_database_up",
    help: "1 when the last database check succeeded.",
    registers: [registry],
    collect() {
      this.set(sources.database().up ? 1 : 0);
    },
  });
  new Gauge({
    name: "keyward_database_pool_connections",
    help: "PostgreSQL pool connections by state (total, idle, waiting requests).",
    labelNames: ["state"],
    registers: [registry],
    collect() {
      const pool = sources.database().pool;
      if (!pool) return;
      this.set({ state: "total" }, pool.total);
      this.set({ state: "idle" }, pool.idle);
      this.set({ state: "waiting" }, pool.waiting);
    },
  });

  if (sources.changeFeed) {
    const feed = sources.changeFeed;
    mirrored(registry, "keyward_invalidation_notifications_total", "Key change notifications received (LISTEN/NOTIFY).", () => feed().notifications);
    mirrored(registry, "keyward_invalidation_evictions_total", "Cache entries evicted by notifications.", () => feed().evictions);
    mirrored(registry, "keyward_invalidation_cache_clears_total", "Whole-cache clears after a gap in listening.", () => feed().clears);
    mirrored(registry, "keyward_invalidation_reconnects_total", "Reconnects of the listening connection.", () => feed().reconnects);
    new Gauge({
      name: "keyward_invalidation_listening",
      help: "1 while the LISTEN connection is up.",
      registers: [registry],
      collect() {
        this.set(feed().listening ? 1 : 0);
      },
    });
  }

  if (sources.mallocTrim) {
    const trim = sources.mallocTrim;
    mirrored(registry, "keyward_malloc_trims_total", "malloc_trim calls after full GCs (free C heap returned to the OS).", () => trim().trims);
    mirrored(registry, "keyward_malloc_trim_seconds_total", "Time the event loop spent in malloc_trim.", () => trim().totalMs / 1000);
  }
  if (sources.idleGc) {
    const idle = sources.idleGc;
    mirrored(registry, "keyward_idle_gcs_total", "Memory-reducing full GCs run once the server went idle after a burst (KEYWARD_IDLE_GC).", () => idle().collections);
    mirrored(registry, "keyward_idle_gc_seconds_total", "Time the event loop spent in idle GCs.", () => idle().totalMs / 1000);
  }

  return {
    registry,
    decision(code) {
      decisions.set(code, (decisions.get(code) ?? 0) + 1);
    },
    call: calls.record,
    async render() {
      return { contentType: registry.contentType, body: await registry.metrics() };
    },
  };
}
