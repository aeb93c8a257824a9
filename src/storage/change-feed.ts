// PostgreSQL LISTEN/NOTIFY: how one instance's key change reaches every other
// instance's cache.
//
// Writers call notifyKeyChanges() inside the change's own transaction, so the
// notification is delivered on commit and never for a rollback. Readers hold one
// dedicated connection per instance (outside the ORM pool: a busy pool never
// delays it, and the pool may sit behind PgBouncer in transaction mode, where
// LISTEN does not work) and report what they hear to a KeyChangeListener.
//
// NOTIFY is not a queue: whatever is sent while nobody listens is gone. So every
// (re)connection is reported as `resumed`, and the core clears the cache.

import { randomBytes } from "node:crypto";
import type { ChangeFeedStats, KeyChangeFeed, KeyChangeListener } from "../core/cache-sync.js";
import type { Logger } from "../logger.js";
import type { SqlEntityManager } from "./orm-types.js";
import { createPgClient, type PgClient } from "./pg-client.js";

/** The one channel every keyward instance of a database listens on. */
export const CHANGE_CHANNEL = "keyward_changes";

// Payload "k:<hash>,<hash>...": key hashes, what the cache is keyed by.
// "p:<name>": a listener's self-check after LISTEN; everyone else ignores it.
// Other prefixes are reserved; a listener that cannot read one clears its cache.
const KEY_PREFIX = "k:";
const PING_PREFIX = "p:";
// PostgreSQL rejects payloads of 8000 bytes or more; stay clear of the limit.
export const MAX_PAYLOAD_BYTES = 7_900;
const HASH_RE = /^[0-9a-f]{16,128}$/;

/** Payloads for these hashes, each under MAX_PAYLOAD_BYTES (ASCII, so chars = bytes). */
export function encodeKeyChanges(hashes: readonly string[]): string[] {
  const payloads: string[] = [];
  let current = "";
  for (const hash of hashes) {
    if (current !== "" && current.length + 1 + hash.length > MAX_PAYLOAD_BYTES) {
      payloads.push(current);
      current = "";
    }
    current = current === "" ? KEY_PREFIX + hash : `${current},${hash}`;
  }
  if (current !== "") payloads.push(current);
  return payloads;
}

export type DecodedChange =
  | { kind: "keys"; hashes: string[] }
  | { kind: "ping"; from: string }
  | { kind: "unknown"; reason: string };

export function decodeChange(payload: string | undefined): DecodedChange {
  if (payload?.startsWith(PING_PREFIX)) return { kind: "ping", from: payload.slice(PING_PREFIX.length) };
  if (payload === undefined || !payload.startsWith(KEY_PREFIX)) {
    return { kind: "unknown", reason: `unrecognised payload prefix "${(payload ?? "").slice(0, 8)}"` };
  }
  const hashes = payload.slice(KEY_PREFIX.length).split(",");
  if (!hashes.every((h) => HASH_RE.test(h))) return { kind: "unknown", reason: "malformed key hash in payload" };
  return { kind: "keys", hashes };
}

/**
 * Sends the change notification for these key hashes on `em`, which must be the
 * transactional EntityManager of the change itself (PostgreSQL only).
 */
export async function notifyKeyChanges(em: SqlEntityManager, hashes: readonly string[]): Promise<void> {
  for (const payload of encodeKeyChanges(hashes)) {
    await em.execute("select pg_notify(?, ?)", [CHANGE_CHANNEL, payload]);
  }
}

export interface PgChangeFeedOptions {
  /** postgres:// URL of the listening connection (not through a transaction-pooling PgBouncer). */
  url: string;
  logger: Logger;
  /** Upper bound of the reconnect backoff. */
  reconnectMaxMs: number;
  /** First reconnect delay; doubles per failed attempt up to reconnectMaxMs. Default 100 ms. */
  reconnectInitialMs?: number;
  /** How often the connection is proven alive with `select 1` (a half-open TCP connection looks idle). */
  heartbeatMs: number;
  /** Connect and query timeout. Default min(heartbeatMs, 5 s). */
  timeoutMs?: number;
  channel?: string;
  /** Defaults to keyward-changes/<pid>/<random>, unique per feed. */
  applicationName?: string;
  /** For deterministic jitter in tests; defaults to Math.random. */
  random?: () => number;
}

export interface PgChangeFeed extends KeyChangeFeed {
  /** application_name of the listening connection, as seen in pg_stat_activity. */
  readonly applicationName: string;
}

/** Backoff for the nth consecutive failure (0-based): capped exponential with equal jitter. */
export function reconnectDelay(attempt: number, initialMs: number, maxMs: number, random: () => number): number {
  const ceiling = Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 30));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

/** Driver errors for logs: message and code only (pg messages carry no credentials). */
function describe(error: unknown): { message: string; code?: string } {
  if (!(error instanceof Error)) return { message: String(error) };
  const code = (error as { code?: unknown }).code;
  return typeof code === "string" ? { message: error.message, code } : { message: error.message };
}

export function createPgChangeFeed(options: PgChangeFeedOptions): PgChangeFeed {
  const { logger, reconnectMaxMs, heartbeatMs } = options;
  const channel = options.channel ?? CHANGE_CHANNEL;
  if (!/^[a-z_][a-z0-9_]*$/.test(channel)) throw new Error(`invalid channel name "${channel}"`);
  const initialMs = Math.min(options.reconnectInitialMs ?? 100, reconnectMaxMs);
  const timeoutMs = options.timeoutMs ?? Math.min(heartbeatMs, 5_000);
  const random = options.random ?? Math.random;
  const applicationName = options.applicationName ?? `keyward-changes/${process.pid}/${randomBytes(3).toString("hex")}`;

  let listener: KeyChangeListener | undefined;
  let client: PgClient | undefined;
  // The connection between connect() and LISTEN's self-check, before it becomes `client`.
  let opening: PgClient | undefined;
  let stopped = false;
  let everListened = false;
  let failures = 0;
  // Start of the current gap: since start(), or since the connection was last known good.
  let downSince = Date.now();
  let lastConfirmedAt = 0;
  let reconnectTimer: NodeJS.Timeout | undefined;
  let heartbeatTimer: NodeJS.Timeout | undefined;
  let heartbeatPending = false;
  const counters = { notifications: 0, reconnects: 0, lastGapMs: 0 };

  // Resolved when this feed's own self-check ping comes back.
  let awaitingPing: (() => void) | undefined;

  function dispatch(payload: string | undefined): void {
    const change = decodeChange(payload);
    try {
      if (change.kind === "keys") listener?.keysChanged(change.hashes);
      else if (change.kind === "ping") {
        if (change.from === applicationName) awaitingPing?.();
      } else listener?.unknownChange(change.reason);
    } catch (error) {
      logger.error({ err: describe(error) }, "change feed: handling a notification failed");
    }
  }

  /** The connection `c` is gone; `since` is when it was last known to work. */
  function lost(c: PgClient, reason: unknown, since: number): void {
    if (client !== c) return;
    client = undefined;
    clearInterval(heartbeatTimer);
    heartbeatTimer = undefined;
    c.end().catch(() => {});
    if (stopped) return;
    downSince = since;
    logger.warn({ err: describe(reason) }, "change feed: listening connection lost; reconnecting");
    schedule(reconnectDelay(0, initialMs, reconnectMaxMs, random));
  }

  function schedule(delayMs: number): void {
    clearTimeout(reconnectTimer);
    reconnectTimer = setTimeout(() => void connect(), delayMs);
    reconnectTimer.unref();
  }

  function heartbeat(c: PgClient): void {
    if (heartbeatPending || client !== c) return;
    heartbeatPending = true;
    const sent = Date.now();
    c.query("select 1").then(
      () => {
        heartbeatPending = false;
        if (client === c) lastConfirmedAt = sent;
      },
      (error: unknown) => {
        heartbeatPending = false;
        lost(c, error, lastConfirmedAt);
      },
    );
  }

  /**
   * Proves that LISTEN really delivers on this connection: through a
   * transaction-pooling PgBouncer it is accepted and then silently lost.
   */
  async function selfCheck(c: PgClient): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const echoed = new Promise<void>((resolve, reject) => {
      awaitingPing = resolve;
      timer = setTimeout(
        () =>
          reject(
            new Error(
              "LISTEN accepted but its own notification never arrived (a transaction-pooling PgBouncer?); " +
                "point KEYWARD_CHANGE_FEED_URL at PostgreSQL directly",
            ),
          ),
        timeoutMs,
      );
    });
    try {
      await c.query("select pg_notify($1, $2)", [channel, PING_PREFIX + applicationName]);
      await echoed;
    } finally {
      clearTimeout(timer);
      awaitingPing = undefined;
    }
  }

  async function open(): Promise<PgClient> {
    const c = createPgClient({
      connectionString: options.url,
      connectionTimeoutMillis: timeoutMs,
      application_name: applicationName,
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
      query_timeout: timeoutMs,
    });
    let failed: unknown;
    c.on("error", (error) => {
      failed ??= error;
      lost(c, error, Date.now());
    });
    c.on("end", () => {
      failed ??= new Error("connection ended");
      lost(c, failed, Date.now());
    });
    c.on("notification", (message) => {
      // Also while opening: LISTEN is in effect once it answered.
      if (message.channel !== channel || (client !== c && opening !== c)) return;
      counters.notifications++;
      lastConfirmedAt = Date.now();
      dispatch(message.payload);
    });
    opening = c;
    try {
      await c.connect();
      await c.query(`listen ${channel}`);
      await selfCheck(c);
    } catch (error) {
      c.end().catch(() => {});
      throw error;
    } finally {
      opening = undefined;
    }
    if (failed !== undefined) throw failed;
    return c;
  }

  async function connect(): Promise<void> {
    reconnectTimer = undefined;
    if (stopped || client !== undefined) return;
    let c: PgClient;
    try {
      c = await open();
    } catch (error) {
      if (stopped) return;
      const delay = reconnectDelay(++failures, initialMs, reconnectMaxMs, random);
      logger.warn({ err: describe(error), attempt: failures, retryInMs: delay }, "change feed: cannot listen; retrying");
      schedule(delay);
      return;
    }
    if (stopped) {
      c.end().catch(() => {});
      return;
    }
    client = c;
    failures = 0;
    const now = Date.now();
    lastConfirmedAt = now;
    const downMs = now - downSince;
    const initial = !everListened;
    everListened = true;
    if (!initial) {
      counters.reconnects++;
      counters.lastGapMs = downMs;
    }
    logger.info({ channel, applicationName, reconnected: !initial, downMs }, "change feed: listening for key changes");
    heartbeatTimer = setInterval(() => heartbeat(c), heartbeatMs);
    heartbeatTimer.unref();
    // After LISTEN took effect: anything changed before now is covered by the clear.
    try {
      listener?.resumed({ downMs, initial });
    } catch (error) {
      logger.error({ err: describe(error) }, "change feed: handling a reconnect failed");
    }
  }

  return {
    applicationName,
    async start(l) {
      listener = l;
      stopped = false;
      downSince = Date.now();
      await connect();
    },
    async stop() {
      stopped = true;
      clearTimeout(reconnectTimer);
      clearInterval(heartbeatTimer);
      const c = client;
      client = undefined;
      if (c) {
        // end() waits for the server; never let a dead peer hold up shutdown.
        await Promise.race([c.end().catch(() => {}), new Promise((resolve) => setTimeout(resolve, 1_000).unref())]);
      }
    },
    stats(): ChangeFeedStats {
      return { listening: client !== undefined, ...counters };
    },
  };
}
