// keyward server entry point: config → app; SIGTERM/SIGINT drain and exit 0.
import { createApp } from "./app.js";
import { isClusterPrimary, runPrimary } from "./cluster.js";
import { ConfigError, loadConfig } from "./config.js";
import { createLogger } from "./logger.js";

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
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
    // Workers re-run this file with the same environment and take the path below.
    runPrimary({
      workers: config.workers,
      logger,
      stopTimeoutMs: (config.drainDelaySeconds + config.shutdownTimeoutSeconds + 15) * 1000,
    });
    return;
  }

  const app = await createApp({ config, logger });
  await app.start();

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "draining");
    app.stop().then(
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
}

main().catch((err: unknown) => {
  process.stderr.write(`keyward: failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
