// Minimal typed access to the `pg` driver. The package ships no type
// declarations (and @types/pg is not a dependency), so it is loaded through
// createRequire and narrowed to the few calls keyward makes.

import { createRequire } from "node:module";

export interface PgQueryResult {
  rows: Record<string, unknown>[];
}

export interface PgClient {
  connect(): Promise<void>;
  query(sql: string, params?: unknown[]): Promise<PgQueryResult>;
  end(): Promise<void>;
  on(event: "error", listener: (error: Error) => void): unknown;
}

export interface PgClientOptions {
  connectionString: string;
  connectionTimeoutMillis?: number;
}

interface PgModule {
  Client: new (options: PgClientOptions) => PgClient;
}

const require = createRequire(import.meta.url);

/** A single, unpooled PostgreSQL connection; the caller must `connect()` and `end()` it. */
export function createPgClient(options: PgClientOptions): PgClient {
  const pg = require("pg") as PgModule;
  const client = new pg.Client(options);
  // An idle client whose server goes away emits 'error'; without a listener that kills the process.
  client.on("error", () => {});
  return client;
}
