// PostgreSQL for the bench: a throwaway database, 1M key rows inserted in
// bulk, and a query counter read from PostgreSQL's own statistics views.
import { randomBytes } from "node:crypto";
import { createPgClient, type PgClient } from "../../src/storage/pg-client.js";

export interface BenchDatabase {
  name: string;
  url: string;
  drop(): Promise<void>;
}

async function withClient<T>(url: string, run: (client: PgClient) => Promise<T>): Promise<T> {
  const client = createPgClient({ connectionString: url, connectionTimeoutMillis: 5_000, application_name: "keyward-bench" });
  await client.connect();
  try {
    return await run(client);
  } finally {
    await client.end();
  }
}

/** Creates an empty database next to the one `adminUrl` names. */
export async function createBenchDatabase(adminUrl: string): Promise<BenchDatabase> {
  const name = `keyward_bench_${randomBytes(5).toString("hex")}`;
  await withClient(adminUrl, (c) => c.query(`create database ${name}`));
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    name,
    url: url.toString(),
    drop: () => withClient(adminUrl, (c) => c.query(`drop database if exists ${name} with (force)`)).then(() => {}),
  };
}

export interface SeedOptions {
  /** Real keys (plaintext) whose hashes go in, so Verify finds them. */
  keys: readonly { key: string; displayPrefix: string }[];
  hasher: (key: string) => string;
  /** Rows with hashes no key produces, to reach the table size. */
  fillerRows: number;
  /** Scopes every seeded key holds. */
  scopes: readonly string[];
}

const COLUMNS = `id, tenant_id, name, prefix, hash, scopes, created_at, updated_at, metadata, created_by`;

/**
 * Inserts the real keys' hashes (in chunks, through unnest) and the filler rows
 * (one INSERT ... SELECT generate_series, hashed in SQL), then ANALYZE so the
 * planner sees a million-row table. Needs the schema (keyward migrates at start).
 */
export async function seedKeys(url: string, options: SeedOptions): Promise<void> {
  const scopes = JSON.stringify(options.scopes);
  await withClient(url, async (c) => {
    const chunk = 20_000;
    for (let start = 0; start < options.keys.length; start += chunk) {
      const part = options.keys.slice(start, start + chunk);
      await c.query(
        `insert into api_keys (${COLUMNS})
         select 'key_bench_' || ($4::int + n), 'bench', 'bench key ' || ($4::int + n), p, h, $3::jsonb, now(), now(), '{}'::jsonb, 'bench'
         from unnest($1::text[], $2::text[]) with ordinality as t(h, p, n)`,
        [part.map((k) => options.hasher(k.key)), part.map((k) => k.displayPrefix), scopes, start],
      );
    }
    if (options.fillerRows > 0) {
      await c.query(
        `insert into api_keys (${COLUMNS})
         select 'key_filler_' || g, 'bench-filler', 'filler ' || g, 'kw_fill', encode(sha256(convert_to('filler-' || g, 'UTF8')), 'hex'),
                $2::jsonb, now(), now(), '{}'::jsonb, 'bench'
         from generate_series(1, $1::int) g`,
        [options.fillerRows, scopes],
      );
    }
    await c.query("analyze api_keys");
  });
}

export async function countKeys(url: string): Promise<number> {
  return withClient(url, async (c) => Number((await c.query("select count(*) as n from api_keys")).rows[0]!.n));
}

/** request_count as stored (after keyward's usage flush), read straight from the table. */
export async function storedRequestCount(url: string, id: string): Promise<number> {
  return withClient(url, async (c) => Number((await c.query("select request_count from api_keys where id = $1", [id])).rows[0]?.request_count ?? NaN));
}
