// Real keys' hashes in bulk into a SQLite database keyward will open: the
// schema through keyward's own migrations, then one transaction of inserts
// with node:sqlite (seconds for 100,000 rows; Issue would take minutes).
import { DatabaseSync } from "node:sqlite";
import type { GeneratedKey } from "../../src/core/key-format.js";
import { createDatabase } from "../../src/storage/database.js";

export async function seedSqlite(path: string, keys: readonly GeneratedKey[], hasher: (key: string) => string, scopes: readonly string[]): Promise<void> {
  const migrator = await createDatabase({ url: `sqlite:${path}` });
  await migrator.migrate();
  await migrator.close();
  const db = new DatabaseSync(path);
  const now = Date.now();
  // Dates are epoch ms in keyward's SQLite schema; JSON columns are text.
  const insert = db.prepare(
    `insert into api_keys (id, tenant_id, name, prefix, hash, scopes, created_at, updated_at, metadata, created_by)
     values (?, 'bench', ?, ?, ?, ?, ?, ?, '{}', 'bench')`,
  );
  const scopesJson = JSON.stringify(scopes);
  db.exec("begin");
  keys.forEach((k, i) => insert.run(`key_bench_${i + 1}`, `bench key ${i + 1}`, k.displayPrefix, hasher(k.key), scopesJson, now, now));
  db.exec("commit");
  db.close();
}
