// Minimal typed access to the `pg` driver. The package ships no type
// declarations (and @types/pg is not a dependency), so it is loaded through
// createRequire and narrowed to the few calls keyward makes.

import { createRequire } from "node:module";

export interface PgQueryResult {
  rows: Record<string, unknown>[];
}

export interface PgNotification {
  channel: string;
  payload?: string;
  /** Server process id of the notifying session. */
  processId: number;
}

export interface PgClient {
  connect(): Promise<void>;
  query(sql: string, params?: unknown[]): Promise<PgQueryResult>;
  end(): Promise<void>;
  on(event: "error", listener: (error: Error) => void): unknown;
  on(event: "end", listener: () => void): unknown;
  on(event: "notification", listener: (message: PgNotification) => void): unknown;
}

export interface PgClientOptions {
  connectionString: string;
  connectionTimeoutMillis?: number;
  /** Shown in pg_stat_activity, so operators (and tests) can find this connection. */
  application_name?: string;
  /** TCP keepalive, so a silently dropped peer is eventually noticed. */
  keepAlive?: boolean;
  keepAliveInitialDelayMillis?: number;
  /** Client-side limit for each query to answer. */
  query_timeout?: number;
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
