// Composition root: config → storage → core → transport. main.ts and the
// tests both build keyward through here, so tests run the real wiring.
import type { AddressInfo } from "node:net";
import { compressionBrotli, compressionGzip, connectNodeAdapter } from "@connectrpc/connect-node";
import type { Config, TlsConfig } from "./config.js";
import { createAuthenticator } from "./core/auth.js";
import { createCacheSync, type CacheSyncStats, type ChangeFeedStats } from "./core/cache-sync.js";
import { KeywardError, unavailable } from "./core/errors.js";
import { createKeyCache, type KeyCache } from "./core/key-cache.js";
import { createKeyHasher } from "./core/key-format.js";
import { createKeyManager } from "./core/keys.js";
import { systemClock, type Clock } from "./core/model.js";
import { createRateLimiter } from "./core/rate-limiter.js";
import { createSettingsManager } from "./core/settings.js";
import { createUsageRecorder, type UsageRecorder } from "./core/usage.js";
import { createVerifier } from "./core/verifier.js";
import { Authorization } from "./gen/envoy/service/auth/v3/external_auth_pb.js";
import { Health } from "./gen/grpc/health/v1/health_pb.js";
import { KeyService } from "./gen/keyward/v1/keys_pb.js";
import { SettingsService } from "./gen/keyward/v1/settings_pb.js";
import type { Logger } from "./logger.js";
import { createPgChangeFeed } from "./storage/change-feed.js";
import { createDatabase, type Database } from "./storage/database.js";
import { createAuthorizationService, createCheckHandler, createCheckMethod } from "./transport/ext-authz.js";
import { createForwardAuthHandler } from "./transport/forward-auth.js";
import { createGrpcUnaryHandler } from "./transport/grpc-unary.js";
import { createH2ConnectHandler } from "./transport/h2/connect-streams.js";
import { createHealthCheckMethod, createHealthService, createHealthState, type HealthState } from "./transport/health.js";
import { createHttpRoutes } from "./transport/http-routes.js";
import { createKeyService, createVerifyMethod } from "./transport/key-service.js";
import { packApiKey } from "./transport/verify-codec.js";
import { createRoutes, createRpcInterceptor } from "./transport/routes.js";
import { createMetrics } from "./metrics.js";
import { Code, createConnectRouter } from "@connectrpc/connect";
import { createReflectionServices, reflectionServiceDescs } from "./transport/reflection.js";
import { createKeywardServer, type KeywardServer, type TlsSettings } from "./transport/server.js";
import { readFileSync, unwatchFile, watchFile } from "node:fs";
import { createSettingsService } from "./transport/settings-service.js";
import { createAuditService } from "./transport/audit-service.js";
import { createAuditReader } from "./core/audit.js";
import { AuditService } from "./gen/keyward/v1/audit_pb.js";
import { isServerFault } from "./transport/errors.js";
import { loadCollector, startIdleGc, type IdleGc } from "./idle-gc.js";
import { loadMallocTrim, startMemoryTrimmer, type MemoryTrimmer } from "./memory-trim.js";
import { retainTickShape } from "./retain-shapes.js";

export interface AppOptions {
  config: Config;
  logger: Logger;
  /** An already-open database (tests share one); otherwise opened from config.databaseUrl. */
  database?: Database;
  clock?: Clock;
}

export interface App {
  readonly database: Database;
  readonly cache: KeyCache;
  readonly usage: UsageRecorder;
  readonly server: KeywardServer;
  /** grpc.health.v1 and /readyz: SERVING once migrations ran, NOT_SERVING from stop() on. */
  readonly health: HealthState;
  /** Re-reads the TLS certificate, key and client CA (SIGHUP); a bad set is logged and ignored. */
  reloadTls(): void;
  /** Cross-instance cache invalidation; undefined when off (SQLite, or KEYWARD_CHANGE_FEED=off). */
  readonly changeFeed: { readonly applicationName: string; stats(): ChangeFeedStats & CacheSyncStats } | undefined;
  /**
   * Migrates, starts background work and listens; resolves with the bound address.
   * A database that cannot be reached does not stop the start: keyward listens
   * NOT_SERVING (probes can see it; uncached keys are denied as unavailable)
   * and retries the migration in the background until it succeeds.
   */
  start(): Promise<AddressInfo>;
  /** Reports NOT_SERVING, waits drainDelaySeconds, drains calls, flushes usage, closes the database (unless it was passed in). */
  stop(): Promise<void>;
}

export async function createApp(options: AppOptions): Promise<App> {
  const { config, logger } = options;
  const clock = options.clock ?? systemClock;
  const ownsDatabase = options.database === undefined;
  // The server holds the SQLite single-instance lock; a second process on the file fails here.
  const database = options.database ?? (await createDatabase({ url: config.databaseUrl, instanceLock: true, poolMax: config.databasePoolMax }));

  // Until migrations have run the tables may not exist: lookups fail closed as unavailable.
  let migrated = false;
  const cache = createKeyCache({
    load: (hash) => (migrated ? database.keys.findByHash(hash) : Promise.reject(unavailable("database not ready"))),
    pack: packApiKey,
    maxEntries: config.cache.maxEntries,
    ttlMs: config.cache.ttlSeconds * 1000,
    negativeTtlMs: config.cache.negativeTtlSeconds * 1000,
    staleIfErrorMs: config.cache.staleIfErrorSeconds * 1000,
    now: clock.now,
  });
  // Every instance on one PostgreSQL database hears every key change (LISTEN/NOTIFY)
  // and evicts it; after a gap in listening it clears the whole cache.
  const feedUrl = config.changeFeed.url ?? config.databaseUrl;
  const feed =
    config.changeFeed.mode !== "off" && database.kind === "postgresql" && /^postgres(ql)?:/.test(feedUrl)
      ? createPgChangeFeed({
          url: feedUrl,
          logger,
          reconnectMaxMs: config.changeFeed.reconnectMaxSeconds * 1000,
          heartbeatMs: config.changeFeed.heartbeatSeconds * 1000,
        })
      : undefined;
  const cacheSync = createCacheSync({
    cache,
    onClear: (info) =>
      logger.warn(info, "verification cache cleared: key change notifications may have been missed"),
  });

  const usageStats = { flushes: 0, flushFailures: 0, lastFlushAt: clock.now(), dropped: 0 };
  const usage = createUsageRecorder({
    store: database.keys,
    onFlushError: (err, pendingKeys) => logger.warn({ err, pendingKeys }, "usage flush failed; counts kept for the next flush"),
    onDrop: (count) => {
      usageStats.dropped += count;
      logger.error({ count }, "usage counts dropped: pending buffer full");
    },
  });
  const flushUsage = () =>
    usage.flush().then(
      () => {
        usageStats.flushes++;
        usageStats.lastFlushAt = clock.now();
      },
      (err: unknown) => {
        usageStats.flushFailures++;
        throw err;
      },
    );
  let databaseUp = false;
  const limiter = createRateLimiter();
  // Loaded now so /metrics knows whether it runs; started with the server.
  const trim = config.mallocTrim ? loadMallocTrim() : undefined;
  let trimmer: MemoryTrimmer | undefined;
  const collect = config.idleGc ? loadCollector() : undefined;
  let idleGc: IdleGc | undefined;
  const metrics = createMetrics({
    cache: () => cache.stats(),
    usage: () => ({ ...usageStats, pendingKeys: usage.pendingKeys() }),
    database: () => ({ up: databaseUp, pool: database.poolState() }),
    rateLimitWindows: () => limiter.size(),
    changeFeed: feed && (() => ({ ...feed.stats(), ...cacheSync.stats() })),
    mallocTrim: trim && (() => trimmer?.stats() ?? { trims: 0, totalMs: 0 }),
    idleGc: collect && (() => idleGc?.stats() ?? { collections: 0, totalMs: 0 }),
  });
  const hasher = createKeyHasher(config.hashPepper);
  const verifier = createVerifier({ cache, digest: createKeyHasher(config.hashPepper, "latin1"), limiter, usage, clock, onDecision: metrics.decision });
  const auth = createAuthenticator({ adminToken: config.adminToken, verifier });
  const keys = createKeyManager({ store: database.keys, cache, hasher, clock });
  const settings = createSettingsManager({ store: database.settings, clock });

  const keyService = createKeyService({ verifier, keys, usage, auth });
  const settingsService = createSettingsService({ settings, auth });

  const health = createHealthState({ services: [KeyService.typeName, SettingsService.typeName, Authorization.typeName] });
  // A database outage would otherwise log one line per denied request.
  const onAuthzError = throttled(5_000, (err: unknown, suppressed: number) =>
    logger.error({ err, suppressed }, "authorization decision failed; denied (fail closed)"),
  );
  const authzOptions = { verifier, credential: config.authz, clock, onError: onAuthzError };
  const checkOptions = { ...authzOptions, removeCredential: config.authz.removeCredential };
  const check = createCheckHandler(checkOptions);

  const shutdown = new AbortController();
  const routes = createRoutes({
    keyService,
    settingsService,
    auditService: createAuditService({ audit: createAuditReader({ store: database.audit }), auth }),
    reflection: createReflectionServices({
      services: [KeyService, SettingsService, AuditService, Authorization, Health, ...reflectionServiceDescs],
    }),
    authorization: createAuthorizationService(check),
    health: createHealthService(health),
  });
  const connectOptions = {
    interceptors: [createRpcInterceptor({ logger, onCall: metrics.call, hotPathLogSampleRate: config.logSampleRate })],
    acceptCompression: [compressionGzip, compressionBrotli],
    readMaxBytes: config.maxMessageBytes,
    // JSON callers (curl) should see "valid": false rather than a missing field.
    jsonOptions: { alwaysEmitImplicit: true },
    writeMaxBytes: 16 * 1024 * 1024,
    maxTimeoutMs: 5 * 60_000,
    shutdownSignal: shutdown.signal,
  };
  // HTTP/1.1 through connect-node's adapter; HTTP/2 straight off keyward's streams, same router options.
  const connectHandler = connectNodeAdapter({ ...connectOptions, routes });
  const rpcRouter = createConnectRouter(connectOptions);
  routes(rpcRouter);
  // Like onAuthzError: one line per outage, not one per failed lookup.
  const onLeanFault = throttled(5_000, (fields: unknown, suppressed: number) =>
    logger.error({ ...(fields as object), suppressed }, "rpc failed"),
  );
  const unary = createGrpcUnaryHandler({
    maxMessageBytes: config.maxMessageBytes,
    methods: [
      createVerifyMethod({ verifier, usage }),
      createCheckMethod(checkOptions),
      createHealthCheckMethod(health),
    ],
    onError: (error, path) => {
      if (isServerFault(error)) onLeanFault({ rpc: path, code: error.code, err: error.cause ?? error });
    },
    onCall: (path, code, seconds) => {
      metrics.call(path, code, seconds);
      if (config.logSampleRate > 0 && Math.random() < config.logSampleRate) {
        logger.info({ rpc: path, code: code === 0 ? "OK" : (Code[code] ?? String(code)), durationMs: seconds * 1000 }, "call");
      }
    },
  });
  const handler = createHttpRoutes({
    forwardAuth: createForwardAuthHandler(authzOptions),
    health,
    databaseUp: () => databaseUp,
    metrics: config.metrics ? () => metrics.render() : undefined,
    fallback: connectHandler,
  });
  const tlsFiles = config.tls;
  const server = createKeywardServer({
    handler,
    unary,
    rpc: createH2ConnectHandler({ router: rpcRouter, onError: (err) => logger.error({ err }, "rpc handler failed") }),
    onError: (err) => logger.error({ err }, "HTTP/2 connection closed after an internal error"),
    tls: tlsFiles && (() => loadTlsSettings(tlsFiles)),
  });
  const reloadTls = (why: string) => {
    if (!tlsFiles) return;
    try {
      server.reloadTls();
      logger.info({ why }, "TLS certificate reloaded");
    } catch (err) {
      logger.error({ err, why }, "TLS reload failed; keeping the previous certificate");
    }
  };
  // Secret mounts (Kubernetes) swap files in place: poll their mtimes.
  const watched = tlsFiles ? [tlsFiles.certFile, tlsFiles.keyFile, tlsFiles.clientCaFile].filter((f): f is string => !!f) : [];

  let flushTimer: NodeJS.Timeout | undefined;
  let sweepTimer: NodeJS.Timeout | undefined;
  let pingTimer: NodeJS.Timeout | undefined;
  let retryTimer: NodeJS.Timeout | undefined;
  let stopping = false;

  /** False when the database cannot be reached; any other failure is thrown. */
  const migrate = async (): Promise<boolean> => {
    try {
      await database.migrate();
    } catch (error) {
      if (error instanceof KeywardError && error.kind === "unavailable") return false;
      throw error;
    }
    migrated = true;
    databaseUp = true;
    health.set(true);
    return true;
  };
  const retryMigrate = (delayMs: number) => {
    retryTimer = setTimeout(() => {
      const again = () => {
        if (!stopping) retryMigrate(Math.min(delayMs * 2, MAX_RETRY_MS));
      };
      migrate().then(
        (ok) => (ok ? logger.info("database reachable: migrated, serving") : again()),
        (err: unknown) => {
          logger.error({ err }, "migration failed; retrying");
          again();
        },
      );
    }, delayMs);
  };

  return {
    database,
    cache,
    usage,
    server,
    health,
    reloadTls: () => reloadTls("signal"),
    changeFeed: feed && {
      applicationName: feed.applicationName,
      stats: () => ({ ...feed.stats(), ...cacheSync.stats() }),
    },
    async start() {
      if (!(await migrate())) {
        health.set(false, "database unreachable");
        logger.warn({ database: database.kind }, "database unreachable at start: listening NOT_SERVING, retrying in the background");
        retryMigrate(FIRST_RETRY_MS);
      }
      // Reachable database: listen before serving. Otherwise the feed retries in the background.
      if (feed) {
        const listening = feed.start(cacheSync);
        if (migrated) await listening;
      }
      flushTimer = setInterval(() => flushUsage().catch(() => {}), config.usageFlushSeconds * 1000);
      flushTimer.unref();
      sweepTimer = setInterval(() => limiter.sweep(clock.now()), 60_000);
      sweepTimer.unref();
      // Database state for /readyz and metrics; it never changes what is served.
      pingTimer = setInterval(() => {
        if (migrated) database.ping().then(() => (databaseUp = true), () => (databaseUp = false));
      }, DATABASE_CHECK_MS);
      pingTimer.unref();
      // Before the first idle spell: see retain-shapes.ts.
      retainTickShape();
      trimmer = trim && startMemoryTrimmer({ trim, onTrim: (durationMs, released) => logger.debug({ durationMs, released }, "malloc_trim after a full GC") });
      if (config.idleGc && !collect) logger.warn("KEYWARD_IDLE_GC: V8 gave no gc() function; running without the idle GC");
      idleGc =
        collect &&
        startIdleGc({
          collect,
          onCollect: (durationMs, freedBytes) => logger.debug({ durationMs, freedMiB: Math.round(freedBytes / 2 ** 20) }, "idle GC"),
        });
      for (const file of watched) {
        watchFile(file, { interval: TLS_WATCH_MS, persistent: false }, (now, before) => {
          if (now.mtimeMs !== before.mtimeMs) reloadTls(`${file} changed`);
        });
      }
      const address = await server.listen(config.listen.host, config.listen.port);
      logger.info(
        { address: `${address.address}:${address.port}`, database: database.kind, tls: tlsFiles ? tlsFiles.clientAuth === "require" ? "mtls" : "on" : "off" },
        "keyward listening",
      );
      return address;
    },
    async stop() {
      // NOT_SERVING first (Watch streams receive it and end), so health-checking
      // proxies move traffic away before the listener closes.
      stopping = true;
      clearTimeout(retryTimer);
      health.shutdown();
      if (config.drainDelaySeconds > 0) await new Promise((r) => setTimeout(r, config.drainDelaySeconds * 1000));
      clearInterval(flushTimer);
      clearInterval(sweepTimer);
      clearInterval(pingTimer);
      trimmer?.stop();
      idleGc?.stop();
      for (const file of watched) unwatchFile(file);
      // In-flight calls finish on their own; only what outlives the grace period is cut.
      await server.close(config.shutdownTimeoutSeconds * 1000);
      shutdown.abort();
      await feed?.stop();
      try {
        await flushUsage();
      } catch (err) {
        logger.error({ err, pendingKeys: usage.pendingKeys() }, "final usage flush failed");
      }
      if (ownsDatabase) await database.close();
    },
  };
}

const FIRST_RETRY_MS = 500;
const DATABASE_CHECK_MS = 5_000;
const TLS_WATCH_MS = 5_000;

function loadTlsSettings(files: TlsConfig): TlsSettings {
  return {
    context: {
      cert: readFileSync(files.certFile),
      key: readFileSync(files.keyFile),
      ca: files.clientCaFile ? readFileSync(files.clientCaFile) : undefined,
    },
    clientAuth: files.clientAuth,
  };
}
const MAX_RETRY_MS = 30_000;

/** Calls `log` at most once per `intervalMs`, telling it how many calls were skipped since. */
function throttled(intervalMs: number, log: (err: unknown, suppressed: number) => void): (err: unknown) => void {
  let last = -Infinity;
  let suppressed = 0;
  return (err) => {
    const now = Date.now();
    if (now - last < intervalMs) {
      suppressed++;
      return;
    }
    log(err, suppressed);
    last = now;
    suppressed = 0;
  };
}
