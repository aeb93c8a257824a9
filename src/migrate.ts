// Entry point for `npm run migrate`: applies pending schema migrations to
// KEYWARD_DATABASE_URL and exits. Logs one JSON line either way.

import { createDatabase } from "./storage/database.js";

const DEFAULT_DATABASE_URL = "sqlite:./data/keyward.db";

function logLine(level: "info" | "error", msg: string, fields: Record<string, unknown>): void {
  const line = JSON.stringify({ level, time: new Date().toISOString(), msg, ...fields });
  (level === "error" ? process.stderr : process.stdout).write(`${line}\n`);
}

async function main(): Promise<number> {
  const started = performance.now();
  try {
    const db = await createDatabase({ url: process.env.KEYWARD_DATABASE_URL ?? DEFAULT_DATABASE_URL });
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

process.exitCode = await main();
