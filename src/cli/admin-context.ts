// What the CLI's database commands run on: the core's key and settings
// managers over the configured database, acting as an admin principal whose
// actor is "cli" (audit trail, created_by). Nothing here writes SQL.
import type { Config } from "../config.js";
import type { Principal } from "../core/auth.js";
import { createKeyHasher } from "../core/key-format.js";
import { createKeyManager, type KeyManager } from "../core/keys.js";
import { systemClock } from "../core/model.js";
import { createSettingsManager, type SettingsManager } from "../core/settings.js";
import { createDatabase } from "../storage/database.js";

export const CLI_PRINCIPAL: Principal = Object.freeze({ kind: "admin", actor: "cli" });

export interface AdminContext {
  principal: Principal;
  keys: KeyManager;
  settings: SettingsManager;
}

/** Opens the database, applies pending migrations, runs `use`, closes. */
export async function withAdminContext<T>(config: Config, use: (context: AdminContext) => Promise<T>): Promise<T> {
  // Without the SQLite instance lock: a running server holds it, and the CLI is a
  // short-lived writer beside it (WAL). That server sees CLI changes within its cache
  // TTL; on PostgreSQL every server hears them at once (the stores NOTIFY on commit).
  // One connection: the CLI runs one call at a time (the migration lock has its own).
  const database = await createDatabase({ url: config.databaseUrl, poolMax: 1 });
  try {
    // Idempotent, and what every server start does: `keyward issue` can bootstrap a new database.
    await database.migrate();
    // The CLI verifies nothing, so it keeps no verification cache for the managers to update.
    const cache = { set: () => {} };
    // The server's pepper, or keys issued here would not verify there.
    const hasher = createKeyHasher(config.hashPepper);
    return await use({
      principal: CLI_PRINCIPAL,
      keys: createKeyManager({ store: database.keys, cache, hasher, clock: systemClock }),
      settings: createSettingsManager({ store: database.settings, clock: systemClock }),
    });
  } finally {
    await database.close();
  }
}
