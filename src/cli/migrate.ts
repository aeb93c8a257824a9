// `keyward migrate` and `npm run migrate`: applies pending schema migrations to
// the configured database and exits. Logs one JSON line either way.
import { loadEffectiveConfig } from "../config-file.js";
import { ConfigError } from "../config.js";
import { createDatabase } from "../storage/database.js";

export interface MigrateOptions {
  configFile?: string;
}

function logLine(level: "info" | "error", msg: string, fields: Record<string, unknown>): void {
  const line = JSON.stringify({ level, time: new Date().toISOString(), msg, ...fields });
  (level === "error" ? process.stderr : process.stdout).write(`${line}\n`);
}

/** Resolves with the exit code: 0 migrated, 1 failed, 2 invalid configuration. */
export async function migrate(options: MigrateOptions = {}): Promise<number> {
  const started = performance.now();
  let databaseUrl: string;
  try {
    databaseUrl = loadEffectiveConfig({ file: options.configFile }).config.databaseUrl;
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`keyward: invalid configuration: ${error.message}\n`);
    return 2;
  }
  try {
    // No instance lock: a server may be serving this SQLite file; migrations are idempotent.
    const db = await createDatabase({ url: databaseUrl });
    try {
      await db.migrate();
      logLine("info", "migrations applied", { database: db.kind, durationMs: Math.round(performance.now() - started) });
    } finally {
      await db.close();
    }
    return 0;
  } catch (error) {
    // Storage errors are sanitized already; messages carry no URL or SQL values.
    const message = error instanceof Error ? error.message : String(error);
    const cause = error instanceof Error && error.cause instanceof Error ? error.cause.message : undefined;
    logLine("error", "migrations failed", cause === undefined ? { error: message } : { error: message, cause });
    return 1;
  }
}
