// Composition root: config → storage → core → transport. main.ts and the
// tests both build keyward through here, so tests run the real wiring.
import type { AddressInfo } from "node:net";
import { compressionBrotli, compressionGzip, connectNodeAdapter } from "@connectrpc/connect-node";
import type { Config } from "./config.js";
import { createAuthenticator } from "./core/auth.js";
import { createKeyCache, type KeyCache } from "./core/key-cache.js";
import { createKeyHasher } from "./core/key-format.js";
import { createKeyManager } from "./core/keys.js";
import { systemClock, type Clock } from "./core/model.js";
import { createRateLimiter } from "./core/rate-limiter.js";
import { createSettingsManager } from "./core/settings.js";
import { createUsageRecorder, type UsageRecorder } from "./core/usage.js";
import { createVerifier } from "./core/verifier.js";
import { KeyService } from "./gen/keyward/v1/keys_pb.js";
import { SettingsService } from "./gen/keyward/v1/settings_pb.js";
import type { Logger } from "./logger.js";
import { createDatabase, type Database } from "./storage/database.js";
import { createGrpcUnaryHandler } from "./transport/grpc-unary.js";
import { createKeyService, createVerifyMethod } from "./transport/key-service.js";
import { createErrorInterceptor, createRoutes } from "./transport/routes.js";
import { createReflectionServices, reflectionServiceDescs } from "./transport/reflection.js";
import { createKeywardServer, type KeywardServer } from "./transport/server.js";
import { createSettingsService } from "./transport/settings-service.js";
import { isServerFault } from "./transport/errors.js";

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
  /** Migrates, starts background work and listens; resolves with the bound address. */
  start(): Promise<AddressInfo>;
  /** Drains calls, flushes usage, closes the database (unless it was passed in). */
  stop(): Promise<void>;
}

export async function createApp(options: AppOptions): Promise<App> {
  const { config, logger } = options;
  const clock = options.clock ?? systemClock;
  const ownsDatabase = options.database === undefined;
  const database = options.database ?? (await createDatabase({ url: config.databaseUrl }));

  const cache = createKeyCache({
    load: (hash) => database.keys.findByHash(hash),
    maxEntries: config.cache.maxEntries,
    ttlMs: config.cache.ttlSeconds * 1000,
    negativeTtlMs: config.cache.negativeTtlSeconds * 1000,
  });
  const usage = createUsageRecorder({
    store: database.keys,
    onFlushError: (err, pendingKeys) => logger.warn({ err, pendingKeys }, "usage flush failed; counts kept for the next flush"),
    onDrop: (count) => logger.error({ count }, "usage counts dropped: pending buffer full"),
  });
  const limiter = createRateLimiter();
  const hasher = createKeyHasher(config.hashPepper);
  const verifier = createVerifier({ cache, hasher, limiter, usage, clock });
  const auth = createAuthenticator({ adminToken: config.adminToken, verifier });
  const keys = createKeyManager({ store: database.keys, cache, hasher, clock });
  const settings = createSettingsManager({ store: database.settings, clock });

  const keyService = createKeyService({ verifier, keys, usage, auth });
  const settingsService = createSettingsService({ settings, auth });

  const shutdown = new AbortController();
  const connectHandler = connectNodeAdapter({
    routes: createRoutes({
      keyService,
      settingsService,
      reflection: createReflectionServices({ services: [KeyService, SettingsService, ...reflectionServiceDescs] }),
    }),
    interceptors: [createErrorInterceptor(logger)],
    acceptCompression: [compressionGzip, compressionBrotli],
    readMaxBytes: config.maxMessageBytes,
    // JSON callers (curl) should see "valid": false rather than a missing field.
    jsonOptions: { alwaysEmitImplicit: true },
    writeMaxBytes: 16 * 1024 * 1024,
    maxTimeoutMs: 5 * 60_000,
    shutdownSignal: shutdown.signal,
  });
  const unary = createGrpcUnaryHandler({
    maxMessageBytes: config.maxMessageBytes,
    methods: [
      createVerifyMethod({ verifier, usage }),
    ],
    onError: (error, path) => {
      if (isServerFault(error)) logger.error({ rpc: path, code: error.code, err: error.cause ?? error }, "rpc failed");
    },
  });
  const server = createKeywardServer({ handler: connectHandler, unary });

  let flushTimer: NodeJS.Timeout | undefined;
  let sweepTimer: NodeJS.Timeout | undefined;

  return {
    database,
    cache,
    usage,
    server,
    async start() {
      await database.migrate();
      flushTimer = setInterval(() => usage.flush().catch(() => {}), config.usageFlushSeconds * 1000);
      flushTimer.unref();
      sweepTimer = setInterval(() => limiter.sweep(clock.now()), 60_000);
      sweepTimer.unref();
      const address = await server.listen(config.listen.host, config.listen.port);
      logger.info({ address: `${address.address}:${address.port}`, database: database.kind }, "keyward listening");
      return address;
    },
    async stop() {
      clearInterval(flushTimer);
      clearInterval(sweepTimer);
      shutdown.abort();
      await server.close(config.shutdownTimeoutSeconds * 1000);
      try {
        await usage.flush();
      } catch (err) {
        logger.error({ err, pendingKeys: usage.pendingKeys() }, "final usage flush failed");
      }
      if (ownsDatabase) await database.close();
    },
  };
}
