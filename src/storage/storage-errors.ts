// Converts database driver errors into errors that are safe to show and log.
// MikroORM's exception messages embed the SQL with its values inlined (and,
// on PostgreSQL, the constraint detail "Key (hash)=(...)"), so neither the
// message nor the original error may travel further; only the error class
// name and SQLSTATE/driver code survive.

import { ConnectionException, DriverException, UniqueConstraintViolationException } from "@mikro-orm/core";
import { KeywardError } from "../core/errors.js";

/** Safe summary of a driver failure, usable as `cause` in logs. */
export class StorageFailure extends Error {
  readonly code: string | undefined;
  constructor(operation: string, error: DriverException) {
    const code = error.sqlState ?? error.code;
    super(`${operation} failed: ${error.name}${code ? ` (code ${code})` : ""}`);
    this.name = "StorageFailure";
    this.code = code;
  }
}

// Socket-level failures (no SQL involved) that mean the database cannot be reached.
const NETWORK_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "ENOTFOUND", "ETIMEDOUT", "EHOSTUNREACH", "EPIPE"]);

/**
 * PostgreSQL SQLSTATEs that mean "not now" rather than "wrong": connection
 * exceptions (08), insufficient resources such as too many connections (53),
 * and the server shutting down or starting (57P01-57P03).
 */
const unavailableSqlState = (code: string | undefined) =>
  code !== undefined && (/^(08|53)/.test(code) || code === "57P01" || code === "57P02" || code === "57P03");

// Messages pg and its pool use for connections that died or never came up.
const LOST_CONNECTION = /connection terminated|connection timeout|timeout exceeded when trying to connect|connection ended|client has encountered a connection error/i;

// Failures of a connection that was up: a pooled connection that died while
// idle (database restart, a proxy or NAT dropping it) is only found out when
// used. Not connect failures: trying those again at once only adds latency.
const BROKEN_CONNECTION_CODES = new Set(["ECONNRESET", "EPIPE", "57P01", "57P02"]);
// pg's words for a socket that closed under a query; not "... due to connection timeout" (a connect that failed).
const BROKEN_CONNECTION = /^connection terminated( unexpectedly)?$|client has encountered a connection error/i;

/** True when an error says the connection a statement went out on was dead, so a read may be tried again on another. */
export function isBrokenConnection(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  const message = error instanceof Error ? error.message : "";
  return (typeof code === "string" && BROKEN_CONNECTION_CODES.has(code)) || BROKEN_CONNECTION.test(message);
}

export function sanitizeStorageError(operation: string, error: unknown): unknown {
  if (!(error instanceof DriverException)) {
    const code = (error as { code?: unknown } | null)?.code;
    const message = error instanceof Error ? error.message : "";
    if ((typeof code === "string" && (NETWORK_CODES.has(code) || unavailableSqlState(code))) || LOST_CONNECTION.test(message)) {
      return new KeywardError("unavailable", "database unavailable", { cause: error });
    }
    return error;
  }
  const cause = new StorageFailure(operation, error);
  if (error instanceof UniqueConstraintViolationException) {
    return new KeywardError("already_exists", "a record with the same identity already exists", { cause });
  }
  // pg's socket errors reach us wrapped in a plain DriverException (code ECONNREFUSED...) or,
  // for a dropped or timed-out connection, with no code at all: all mean "cannot reach it".
  if (
    error instanceof ConnectionException ||
    (cause.code !== undefined && NETWORK_CODES.has(cause.code)) ||
    unavailableSqlState(cause.code) ||
    LOST_CONNECTION.test(error.message)
  ) {
    return new KeywardError("unavailable", "database unavailable", { cause });
  }
  return cause;
}

/** Runs one store operation, replacing driver errors by sanitized ones. */
export async function guarded<T>(operation: string, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    throw sanitizeStorageError(operation, error);
  }
}
