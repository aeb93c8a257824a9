// SQLite mode is single-instance: each process keeps its own cache, rate-limit
// windows and usage buffer, and nothing tells one process that another changed a
// key. So a second keyward process on the same SQLite file refuses to start.
//
// The lock is an exclusive SQLite lock (an fcntl lock, held by the kernel) on a
// small side file next to the database, kept for the life of the process. Unlike
// a pid file it cannot go stale: the kernel drops it when the process exits or
// is killed, and pid reuse or pid namespaces (containers) cannot fool it. It lives
// on a side file, not the database itself, so sqlite3 and `npm run migrate` can
// still open the database. Like SQLite itself, it needs a local filesystem.

import { realpathSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import type { DatabaseSync } from "node:sqlite";

export class InstanceLockError extends Error {
  constructor(
    readonly databasePath: string,
    readonly lockPath: string,
    options?: { cause?: unknown },
  ) {
    super(
      `another keyward process is already serving the SQLite database ${databasePath} ` +
        `(it holds ${lockPath}). SQLite mode runs one instance per database file: stop the other process, ` +
        `or use PostgreSQL (KEYWARD_DATABASE_URL=postgres://...) to run several instances`,
      options,
    );
    this.name = "InstanceLockError";
  }
}

export interface InstanceLock {
  readonly path: string;
  release(): void;
}

export const LOCK_SUFFIX = ".instance-lock";

/** Where the lock for this database lives: resolved through symlinks, so two spellings share one lock. */
export function lockPathFor(databasePath: string): string {
  let dir = dirname(databasePath);
  try {
    dir = realpathSync(dir);
  } catch {
    // The directory is created before the lock is taken; fall back to the spelling given.
  }
  return join(dir, basename(databasePath) + LOCK_SUFFIX);
}

/** Takes the lock or throws InstanceLockError at once (no waiting). */
export async function acquireInstanceLock(databasePath: string): Promise<InstanceLock> {
  const path = lockPathFor(databasePath);
  // Loaded only in SQLite mode; node:sqlite is built into Node >= 22.13.
  const { DatabaseSync } = await import("node:sqlite");
  let db: DatabaseSync | undefined;
  try {
    db = new DatabaseSync(path, { timeout: 0 });
    // Exclusive locking mode keeps the lock after the transaction until close();
    // no journal, so the lock file is the only file.
    db.exec("pragma locking_mode = exclusive; pragma journal_mode = off; begin exclusive; commit;");
  } catch (error) {
    db?.close();
    if ((error as { errcode?: number }).errcode === 5 /* SQLITE_BUSY */) {
      throw new InstanceLockError(databasePath, path, { cause: error });
    }
    throw error;
  }
  const held = db;
  let released = false;
  return {
    path,
    release() {
      if (released) return;
      released = true;
      held.close();
    },
  };
}
