// Parses KEYWARD_DATABASE_URL. Error messages describe the accepted forms and
// never echo the URL itself, which may carry a password.

import { isAbsolute, resolve } from "node:path";

export type DatabaseKind = "sqlite" | "postgresql";

export type ParsedDatabaseUrl =
  | { kind: "sqlite"; /** Absolute file path, or ":memory:". */ path: string }
  | { kind: "postgresql"; url: string };

const ACCEPTED_FORMS =
  "expected sqlite:PATH (relative or absolute file path), sqlite::memory:, " +
  "or postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE (postgresql:// also accepted)";

function invalid(reason: string): Error {
  return new Error(`Invalid KEYWARD_DATABASE_URL: ${reason}; ${ACCEPTED_FORMS}`);
}

export function parseDatabaseUrl(url: string, cwd: string = process.cwd()): ParsedDatabaseUrl {
  const trimmed = url.trim();
  if (trimmed.startsWith("sqlite:")) {
    const path = trimmed.slice("sqlite:".length);
    if (path === ":memory:") return { kind: "sqlite", path };
    if (path === "") throw invalid("the sqlite file path is empty");
    return { kind: "sqlite", path: isAbsolute(path) ? path : resolve(cwd, path) };
  }
  if (trimmed.startsWith("postgres://") || trimmed.startsWith("postgresql://")) {
    let parsed: URL;
    try {
      parsed = new URL(trimmed);
    } catch {
      throw invalid("the postgres URL is malformed");
    }
    if (!parsed.hostname) throw invalid("the postgres URL has no host");
    if (parsed.pathname.length <= 1) throw invalid("the postgres URL names no database");
    return { kind: "postgresql", url: trimmed };
  }
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(trimmed)?.[1];
  throw invalid(scheme ? `unsupported scheme "${scheme}"` : "no scheme given");
}
