// Opens the keyward database (SQLite or PostgreSQL) behind the storage ports
// of src/core/model.ts. Drivers are imported lazily so a PostgreSQL
// deployment never loads the native SQLite addon and vice versa.

import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import type { MigrationObject, Options } from "@mikro-orm/core";
import { Migrator } from "@mikro-orm/migrations";
import type { AuditStore, KeyRecord, KeyStore, SettingStore } from "../core/model.js";
import { createAuditStore } from "./audit-store.js";
import { notifyKeyChanges } from "./change-feed.js";
import { parseDatabaseUrl, type DatabaseKind, type ParsedDatabaseUrl } from "./database-url.js";
import { entities } from "./entities.js";
import { createKeyStore } from "./key-store.js";
import type { SqlOrm } from "./orm-types.js";
import { createPgClient } from "./pg-client.js";
import { createQueryLogger, type QueryListener } from "./query-logger.js";
import { KEY_COLUMNS, keyRecordFromRow } from "./records.js";
import { createSettingStore } from "./setting-store.js";
import { acquireInstanceLock, type InstanceLock } from "./sqlite-instance-lock.js";
import { guarded, isBrokenConnection } from "./storage-errors.js";

export type { DatabaseKind };

export interface DatabaseOptions {
  /** KEYWARD_DATABASE_URL: sqlite:PATH, sqlite::memory:, postgres://... or postgresql://... */
  url: string;
  /** Receives every SQL statement executed (with placeholders, never values). */
  debugQueries?: (sql: string) => void;
  /** PostgreSQL pool size (default: pg's 10). SQLite always uses one connection. */
  poolMax?: number;
  /**
   * SQLite files only: hold the single-instance lock until close(), so a second
   * server process on the same file fails with InstanceLockError. The server sets
   * it; tools and tests that open a second handle in one process do not.
   */
  instanceLock?: boolean;
}

export interface Database {
  kind: DatabaseKind;
  keys: KeyStore;
  settings: SettingStore;
  audit: AuditStore;
  /** Applies pending migrations; safe to call concurrently from several processes on PostgreSQL. */
  migrate(): Promise<void>;
  /** Runs `select 1`; rejects when the database is unreachable. */
  ping(): Promise<void>;
  /** Connection pool counts (PostgreSQL); undefined for SQLite or before the first connection. */
  poolState(): PoolState | undefined;
  close(): Promise<void>;
  orm: SqlOrm;
}

export interface PoolState {
  total: number;
  idle: number;
  waiting: number;
}

export const MIGRATIONS_TABLE = "keyward_migrations";

// A cache-miss lookup whose connection turns out dead is sent again, up to this many times in all.
const PG_LOOKUP_ATTEMPTS = 3;
// Arbitrary constant naming keyward's migration lock among all advisory locks in the database.
const PG_MIGRATION_LOCK_ID = 7_204_917_311;

export interface OrmOptionsInput {
  debugQueries?: QueryListener;
  poolMax?: number;
  /** Runtime passes the compiled-in list; the migration generator passes a folder instead. */
  migrations: Options["migrations"];
}

/** MikroORM options shared by the runtime and src/storage/create-migration.ts. */
export function createOrmOptions(target: ParsedDatabaseUrl, input: OrmOptionsInput): Partial<Options> {
  const common: Partial<Options> = {
    entities,
    extensions: [Migrator],
    // Our logger decides what is reported; 'query' must be on for it to see statements.
    debug: input.debugQueries ? ["query"] : false,
    loggerFactory: () => createQueryLogger(input.debugQueries),
    // Each store call forks explicitly; touching the global EntityManager is a bug.
    allowGlobalContext: false,
    // Creating a missing database is migrate()'s job, not every connection's.
    ensureDatabase: false,
    migrations: { tableName: MIGRATIONS_TABLE, silent: true, ...input.migrations },
  };
  if (target.kind === "sqlite") {
    return { ...common, dbName: target.path };
  }
  return {
    ...common,
    clientUrl: target.url,
    pool: input.poolMax === undefined ? {} : { max: input.poolMax },
    // Fail instead of hanging when the server is unreachable.
    driverOptions: { connectionTimeoutMillis: 10_000 },
  };
}

async function initOrm(target: ParsedDatabaseUrl, options: Partial<Options>): Promise<SqlOrm> {
  if (target.kind === "sqlite") {
    const { MikroORM } = await import("@mikro-orm/sqlite");
    return (await MikroORM.init(options as Parameters<typeof MikroORM.init>[0])) as unknown as SqlOrm;
  }
  const { MikroORM } = await import("@mikro-orm/postgresql");
  return (await MikroORM.init(options as Parameters<typeof MikroORM.init>[0])) as unknown as SqlOrm;
}

async function loadMigrations(kind: DatabaseKind): Promise<MigrationObject[]> {
  const module =
    kind === "sqlite"
      ? await import("./migrations/sqlite/index.js")
      : await import("./migrations/postgresql/index.js");
  return module.migrations;
}

/**
 * Holds a session-level advisory lock on a dedicated connection (outside the
 * ORM pool, so a pool of one cannot deadlock) while `run` executes. A second
 * instance blocks here until the first has committed, then finds nothing pending.
 */
async function withPgMigrationLock<T>(url: string, debugQueries: QueryListener | undefined, run: () => Promise<T>): Promise<T> {
  const client = createPgClient({ connectionString: url, connectionTimeoutMillis: 10_000 });
  await client.connect();
  try {
    debugQueries?.("select pg_advisory_lock($1)");
    await client.query("select pg_advisory_lock($1)", [PG_MIGRATION_LOCK_ID]);
    try {
      return await run();
    } finally {
      debugQueries?.("select pg_advisory_unlock($1)");
      await client.query("select pg_advisory_unlock($1)", [PG_MIGRATION_LOCK_ID]);
    }
  } finally {
    await client.end();
  }
}

interface PgQueryable {
  query(sql: string, values: unknown[]): Promise<{ rows: Record<string, unknown>[] }>;
}

/** The part of better-sqlite3 the SQLite lookup uses. */
interface SqliteStatement {
  get(...params: unknown[]): Record<string, unknown> | undefined;
}
interface SqliteNative {
  prepare(sql: string): SqliteStatement;
}

/** The counters pg's Pool keeps. */
interface PgPoolCounts {
  totalCount: number;
  idleCount: number;
  waitingCount: number;
}

export async function createDatabase(options: DatabaseOptions): Promise<Database> {
  let pool: PgPoolCounts | undefined;
  const target = parseDatabaseUrl(options.url);
  let lock: InstanceLock | undefined;
  if (target.kind === "sqlite" && target.path !== ":memory:") {
    mkdirSync(dirname(target.path), { recursive: true });
    // Before the ORM touches the file: the second process must not even migrate.
    if (options.instanceLock) lock = await acquireInstanceLock(target.path);
  }
  let orm: SqlOrm;
  try {
    const migrationsList = await loadMigrations(target.kind);
    orm = await initOrm(
      target,
      createOrmOptions(target, {
        debugQueries: options.debugQueries,
        poolMax: options.poolMax,
        migrations: { migrationsList, snapshot: false },
      }),
    );
    if (target.kind === "sqlite" && target.path !== ":memory:") {
      // WAL lets readers (Verify lookups) proceed while a writer commits.
      await orm.em.fork().execute("pragma journal_mode = wal");
    }
  } catch (error) {
    lock?.release();
    throw error;
  }

  // The cache-miss lookup straight on pg's pool (see KeyStoreOptions.lookupByHash).
  // After a database restart several idle pooled connections can be dead at once.
  let nativePool: Promise<PgQueryable> | undefined;
  const pgLookup = async (hash: string): Promise<KeyRecord | null> => {
    nativePool ??= (orm.em.getConnection() as unknown as { getNativeClient(): Promise<PgQueryable> }).getNativeClient();
    const sql = `select ${KEY_COLUMNS} from "api_keys" where "hash" = $1`;
    const pool = await nativePool;
    for (let attempt = 1; ; attempt++) {
      options.debugQueries?.(sql);
      try {
        const { rows } = await pool.query(sql, [hash]);
        return rows[0] ? keyRecordFromRow(rows[0]) : null;
      } catch (error) {
        // The pool drops a connection that failed; a read is safe to send again on another.
        if (attempt >= PG_LOOKUP_ATTEMPTS || !isBrokenConnection(error)) throw error;
      }
    }
  };

  // SQLite: one statement prepared once on better-sqlite3, the connection the ORM
  // uses. Through the ORM every lookup prepared a new native statement, freed
  // only when V8 collected its small wrapper: after 100k misses ~100 MiB of C
  // heap the allocator then kept (npm run bench:memory, BENCH_MEMORY_DB=sqlite).
  const keyByHashSql = `select ${KEY_COLUMNS} from \`api_keys\` where \`hash\` = ?`;
  let sqliteStatement: Promise<SqliteStatement> | undefined;
  const sqliteLookup = async (hash: string): Promise<KeyRecord | null> => {
    if (sqliteStatement === undefined) {
      const prepared = (orm.em.getConnection() as unknown as { getNativeClient(): Promise<SqliteNative> })
        .getNativeClient()
        .then((db) => db.prepare(keyByHashSql));
      // A failed prepare (tables not there yet) is tried again next time.
      prepared.catch(() => {
        if (sqliteStatement === prepared) sqliteStatement = undefined;
      });
      sqliteStatement = prepared;
    }
    options.debugQueries?.(keyByHashSql);
    const row = (await sqliteStatement).get(hash);
    return row ? keyRecordFromRow(row) : null;
  };

  return {
    kind: target.kind,
    // PostgreSQL announces key changes to every instance's cache (LISTEN/NOTIFY);
    // SQLite is single-instance, so there is no one to tell.
    keys: createKeyStore(
      orm,
      target.kind === "postgresql"
        ? { notifyChanges: notifyKeyChanges, batchedUsage: "postgresql", lookupByHash: pgLookup }
        : { batchedUsage: "sqlite", lookupByHash: sqliteLookup },
    ),
    settings: createSettingStore(orm),
    audit: createAuditStore(orm),
    orm,
    async migrate() {
      await guarded("migrate", async () => {
        const up = async () => {
          await orm.migrator.up();
        };
        if (target.kind === "postgresql") {
          await withPgMigrationLock(target.url, options.debugQueries, up);
        } else {
          await up();
        }
      });
    },
    async ping() {
      await guarded("ping", async () => {
        await orm.em.fork().execute("select 1");
      });
      if (target.kind === "postgresql" && pool === undefined) {
        pool = (await (orm.em.getConnection() as unknown as { getNativeClient(): Promise<PgPoolCounts> }).getNativeClient());
      }
    },
    poolState() {
      return pool && { total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount };
    },
    async close() {
      try {
        await orm.close();
      } finally {
        lock?.release();
      }
    },
  };
}
