// Real databases for storage integration tests: a temp-file SQLite database,
// and a throwaway PostgreSQL database created per test file on the server
// named by KEYWARD_TEST_PG_URL. When PostgreSQL is unreachable the
// PostgreSQL factory reports itself unavailable (tests skip with a warning),
// except under CI, where that is an error.

import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { DatabaseKind } from "../../src/storage/database.js";
import { createPgClient, type PgClient } from "../../src/storage/pg-client.js";

const DEFAULT_PG_URL = "postgres://postgres@127.0.0.1:5432/postgres";

export interface TestDatabaseHandle {
  /** Value for createDatabase({ url }). */
  url: string;
  /** Removes the database (file or PostgreSQL database). Close every Database on it first. */
  drop(): Promise<void>;
}

export interface TestDatabaseFactory {
  kind: DatabaseKind;
  /** False when the backend cannot be reached outside CI; tests for it should skip. */
  available: boolean;
  /** Creates a fresh, empty database. */
  create(): Promise<TestDatabaseHandle>;
}

function pgBaseUrl(): URL {
  return new URL(process.env.KEYWARD_TEST_PG_URL ?? DEFAULT_PG_URL);
}

/** The base URL without its password, for messages. */
function describePg(url: URL): string {
  const shown = new URL(url.toString());
  if (shown.password) shown.password = "***";
  return shown.toString();
}

async function withAdmin<T>(run: (client: PgClient) => Promise<T>): Promise<T> {
  const client = createPgClient({ connectionString: pgBaseUrl().toString(), connectionTimeoutMillis: 5_000 });
  await client.connect();
  try {
    return await run(client);
  } finally {
    await client.end();
  }
}

async function probePostgres(): Promise<boolean> {
  try {
    await withAdmin((client) => client.query("select 1"));
    return true;
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    const message = `PostgreSQL at ${describePg(pgBaseUrl())} is unreachable (${reason})`;
    if (process.env.CI) throw new Error(`${message}; PostgreSQL is required in CI (set KEYWARD_TEST_PG_URL)`);
    console.warn(`WARNING: ${message}; skipping PostgreSQL storage tests`);
    return false;
  }
}

const sqliteFactory: TestDatabaseFactory = {
  kind: "sqlite",
  available: true,
  async create() {
    const dir = await mkdtemp(join(tmpdir(), "keyward-test-"));
    return {
      url: `sqlite:${join(dir, "keyward.db")}`,
      drop: () => rm(dir, { recursive: true, force: true }),
    };
  },
};

function postgresFactory(available: boolean): TestDatabaseFactory {
  return {
    kind: "postgresql",
    available,
    async create() {
      // Only [a-z0-9_], so the name needs no quoting.
      const name = `keyward_test_${randomBytes(6).toString("hex")}`;
      await withAdmin((client) => client.query(`create database ${name}`));
      const url = pgBaseUrl();
      url.pathname = `/${name}`;
      return {
        url: url.toString(),
        // "with (force)" ends sessions a failed test may have left open.
        drop: () => withAdmin((client) => client.query(`drop database if exists ${name} with (force)`)).then(() => {}),
      };
    },
  };
}

/** Every backend storage must pass on; probes PostgreSQL once per call. */
export async function testDatabases(): Promise<TestDatabaseFactory[]> {
  return [sqliteFactory, postgresFactory(await probePostgres())];
}
