// `keyward serve` and dist/main.js: config → app; SIGTERM/SIGINT drain and exit 0.
// A bad configuration exits 2, a failed start 1.
import { createApp } from "../app.js";
import { isClusterPrimary, runPrimary } from "../cluster.js";
import { loadEffectiveConfig } from "../config-file.js";
import { ConfigError } from "../config.js";
import { createLogger } from "../logger.js";

export interface ServeOptions {
  /** --config; otherwise KEYWARD_CONFIG. */
  configFile?: string;
}

/** Resolves once listening (or, on a cluster primary, once the workers are forked); exits the process itself. */
export async function serve(options: ServeOptions = {}): Promise<void> {
  try {
    await start(options);
  } catch (err) {
    process.stderr.write(`keyward: failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  }
}

async function start(options: ServeOptions): Promise<void> {
  let config;
  try {
    config = loadEffectiveConfig({ file: options.configFile }).config;
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`keyward: invalid configuration: ${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
  const logger = createLogger({ level: config.logLevel });
  process.on("unhandledRejection", (err) => logger.error({ err }, "unhandled rejection"));
  if (config.workers > 1 && isClusterPrimary()) {
    // Workers re-run the same script with the same arguments and environment and take the path below.
    runPrimary({
      workers: config.workers,
      logger,
      stopTimeoutMs: (config.drainDelaySeconds + config.shutdownTimeoutSeconds + 15) * 1000,
    });
    return;
  }

  const app = await createApp({ config, logger });
  // Signals are handled before start() so a SIGTERM during startup still drains cleanly.
  let started: Promise<unknown> = Promise.resolve();
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "draining");
    started
      .catch(() => {})
      .then(() => app.stop())
      .then(
        () => {
          logger.info("stopped");
          process.exit(0);
        },
        (err: unknown) => {
          logger.error({ err }, "shutdown failed");
          process.exit(1);
        },
      );
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
  // SIGHUP re-reads the TLS certificate (they are also watched for changes).
  process.on("SIGHUP", () => app.reloadTls());
  started = app.start();
  await started;
}
