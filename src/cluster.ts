// KEYWARD_WORKERS=N: N worker processes on one address through node:cluster,
// for hosts where one core is not enough. Each worker runs the whole app (its
// own cache, rate limiter and usage buffer, like N instances on one
// PostgreSQL database; migrations are advisory-locked, so every worker runs
// them safely). The primary serves nothing: it forks, forwards SIGTERM/SIGINT
// and waits for every worker's drain. A worker that dies unexpectedly takes
// the others down (drained) and the primary exits 1, so the supervisor
// restarts keyward whole instead of running it short of a worker unnoticed.
import cluster, { type Worker } from "node:cluster";
import type { Logger } from "./logger.js";

export interface PrimaryOptions {
  workers: number;
  logger: Logger;
  /** How long a worker may take to drain before it is killed (its own timeout plus margin). */
  stopTimeoutMs: number;
}

export function runPrimary(options: PrimaryOptions): void {
  const { logger } = options;
  const workers = new Set<Worker>();
  let listening = 0;
  let stopping = false;
  let failed = false;
  let stopSignal: NodeJS.Signals | undefined;

  const stopAll = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    stopSignal = signal;
    logger.info({ signal, workers: workers.size }, "draining workers");
    for (const worker of workers) worker.process.kill(signal);
    // A worker stuck past its own drain timeout is killed; the exit code says so.
    setTimeout(() => {
      failed = true;
      stopSignal = undefined;
      for (const worker of workers) worker.process.kill("SIGKILL");
    }, options.stopTimeoutMs).unref();
    if (workers.size === 0) process.exit(failed ? 1 : 0);
  };

  cluster.on("listening", (worker, address) => {
    if (++listening === options.workers) {
      logger.info({ workers: [...workers].map((w) => w.process.pid), address: `${address.address}:${address.port}` }, "keyward workers listening");
    }
  });
  cluster.on("exit", (worker, code, signal) => {
    workers.delete(worker);
    if (!stopping) {
      logger.error({ pid: worker.process.pid, code, signal }, "worker exited unexpectedly; stopping the others");
      failed = true;
      stopAll("SIGTERM");
    } else if (code !== 0 && signal !== stopSignal) {
      // Killed by the forwarded signal itself: it was still starting, with nothing to drain.
      failed = true;
    }
    if (workers.size === 0) {
      logger.info({ failed }, "workers stopped");
      process.exit(failed ? 1 : 0);
    }
  });

  process.on("SIGTERM", () => stopAll("SIGTERM"));
  process.on("SIGINT", () => stopAll("SIGINT"));
  process.on("SIGHUP", () => {
    for (const worker of workers) worker.process.kill("SIGHUP");
  });
  for (let i = 0; i < options.workers; i++) workers.add(cluster.fork());
  logger.info({ workers: options.workers }, "keyward primary started");
}

export const isClusterPrimary = (): boolean => cluster.isPrimary;
