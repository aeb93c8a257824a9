// Starts the real keyward app on 127.0.0.1:0 with captured JSON logs.
import { Writable } from "node:stream";
import { createApp, type App } from "../../src/app.js";
import { loadConfig } from "../../src/config.js";
import { createLogger } from "../../src/logger.js";
import type { Database } from "../../src/storage/database.js";
import { ADMIN_TOKEN } from "./core.js";

export interface RunningKeyward {
  app: App;
  baseUrl: string;
  port: number;
  /** Every log line written so far, raw. */
  logs: string[];
  stop(): Promise<void>;
}

export interface StartOptions {
  databaseUrl?: string;
  database?: Database;
  env?: Record<string, string>;
}

export async function startKeyward(options: StartOptions = {}): Promise<RunningKeyward> {
  const logs: string[] = [];
  const destination = new Writable({
    write(chunk, _enc, done) {
      logs.push(String(chunk));
      done();
    },
  });
  const config = loadConfig({
    KEYWARD_LISTEN: "127.0.0.1:0",
    KEYWARD_DATABASE_URL: options.databaseUrl ?? "sqlite::memory:",
    KEYWARD_ADMIN_TOKEN: ADMIN_TOKEN,
    KEYWARD_LOG_LEVEL: "debug",
    KEYWARD_SHUTDOWN_TIMEOUT_SECONDS: "5",
    ...options.env,
  });
  const logger = createLogger({ level: config.logLevel, destination });
  const app = await createApp({ config, logger, database: options.database });
  const address = await app.start();
  return {
    app,
    baseUrl: `http://127.0.0.1:${address.port}`,
    port: address.port,
    logs,
    stop: () => app.stop(),
  };
}

export const adminHeaders = { authorization: `Bearer ${ADMIN_TOKEN}` };
export const bearer = (key: string) => ({ authorization: `Bearer ${key}` });
