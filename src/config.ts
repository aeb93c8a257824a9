// Environment → one validated, typed Config. A bad value stops the start with
// a message that names the variable.
import { availableParallelism } from "node:os";
import { accessSync, constants } from "node:fs";
import { parseDatabaseUrl } from "./storage/database-url.js";

export interface Config {
  listen: { host: string; port: number };
  databaseUrl: string;
  /** KEYWARD_DATABASE_POOL_MAX: PostgreSQL connections per instance (plus one for LISTEN). */
  databasePoolMax: number;
  adminToken: string | undefined;
  hashPepper: string | undefined;
  cache: { maxEntries: number; ttlSeconds: number; negativeTtlSeconds: number; staleIfErrorSeconds: number };
  usageFlushSeconds: number;
  shutdownTimeoutSeconds: number;
  maxMessageBytes: number;
  logLevel: "debug" | "info" | "warn" | "error" | "silent";
  /** ext_authz Check and forward-auth: where the credential is read, what reaches upstream. */
  authz: AuthzConfig;
  /** Seconds between reporting NOT_SERVING and closing the listener, so proxies notice first. */
  drainDelaySeconds: number;
  /** Cross-instance cache invalidation (PostgreSQL LISTEN/NOTIFY). */
  changeFeed: ChangeFeedConfig;
  /** KEYWARD_WORKERS: processes serving the one address (node:cluster); 1 runs no cluster. */
  workers: number;
  /** KEYWARD_METRICS: serve Prometheus metrics at GET /metrics. */
  metrics: boolean;
  /** KEYWARD_MALLOC_TRIM: return the C heap's free memory to the OS after full GCs (Linux/glibc; src/memory-trim.ts). */
  mallocTrim: boolean;
  /** KEYWARD_IDLE_GC: collect the heap once the server goes idle after a burst (src/idle-gc.ts), as V8's memory reducer is meant to. */
  idleGc: boolean;
  /** KEYWARD_LOG_SAMPLE_RATE: share (0-1) of hot-path calls (Verify, Check, health) logged. */
  logSampleRate: number;
  /** TLS for the listener; undefined serves cleartext (h2c and HTTP/1.1). */
  tls: TlsConfig | undefined;
}

export interface TlsConfig {
  /** KEYWARD_TLS_CERT_FILE: PEM certificate chain. */
  certFile: string;
  /** KEYWARD_TLS_KEY_FILE: PEM private key. */
  keyFile: string;
  /** KEYWARD_TLS_CLIENT_CA_FILE: PEM CA bundle for client certificates (mTLS). */
  clientCaFile: string | undefined;
  /** KEYWARD_TLS_CLIENT_AUTH: none, request or require (default require when a client CA is set). */
  clientAuth: "none" | "request" | "require";
}

export interface ChangeFeedConfig {
  /** KEYWARD_CHANGE_FEED: auto (listen on PostgreSQL), on (require it), off (cache TTL only). */
  mode: "auto" | "on" | "off";
  /** KEYWARD_CHANGE_FEED_URL: a direct connection for LISTEN; undefined means KEYWARD_DATABASE_URL. */
  url: string | undefined;
  /** KEYWARD_CHANGE_FEED_RECONNECT_MAX_SECONDS: cap of the reconnect backoff. */
  reconnectMaxSeconds: number;
  /** KEYWARD_CHANGE_FEED_HEARTBEAT_SECONDS: how often the listening connection is proven alive. */
  heartbeatSeconds: number;
}

export interface AuthzConfig {
  /** Lowercase header carrying the raw key (KEYWARD_AUTHZ_API_KEY_HEADER). */
  apiKeyHeader: string;
  /** Also accept `authorization: Bearer <key>` (KEYWARD_AUTHZ_ACCEPT_BEARER). */
  acceptBearer: boolean;
  /** ext_authz: strip the credential header before the request goes upstream (KEYWARD_AUTHZ_REMOVE_CREDENTIAL). */
  removeCredential: boolean;
}

export class ConfigError extends Error {
  /** The message without its "VARIABLE: " location, so a config file can name its own key instead. */
  readonly detail: string;
  constructor(
    readonly variable: string,
    detail: string,
    location: string = variable,
  ) {
    super(`${location}: ${detail}`);
    this.detail = detail;
    this.name = "ConfigError";
  }
}

export const MIN_ADMIN_TOKEN_LENGTH = 24;

export type Env = Record<string, string | undefined>;

function int(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  if (!/^\d+$/.test(raw.trim())) throw new ConfigError(name, `expected a whole number, got "${raw}"`);
  const n = Number(raw.trim());
  if (n < min || n > max) throw new ConfigError(name, `must be between ${min} and ${max}, got ${n}`);
  return n;
}

function fraction(env: Env, name: string, fallback: number): number {
  const raw = env[name]?.trim();
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!/^(0|1|0?\.\d+|1\.0*)$/.test(raw) || !(n >= 0 && n <= 1)) {
    throw new ConfigError(name, `expected a number from 0 to 1 (e.g. 0.01), got "${raw}"`);
  }
  return n;
}

function bool(env: Env, name: string, fallback: boolean): boolean {
  const raw = env[name]?.trim().toLowerCase();
  if (raw === undefined || raw === "") return fallback;
  if (["1", "true", "yes", "on"].includes(raw)) return true;
  if (["0", "false", "no", "off"].includes(raw)) return false;
  throw new ConfigError(name, `expected true or false, got "${env[name]}"`);
}

// RFC 9110 token characters; header names are compared lowercase.
const HEADER_NAME_RE = /^[!#$%&'*+.^_`|~0-9a-z-]+$/;

function apiKeyHeader(env: Env): string {
  const name = "KEYWARD_AUTHZ_API_KEY_HEADER";
  const value = (env[name]?.trim() || "x-api-key").toLowerCase();
  if (!HEADER_NAME_RE.test(value)) throw new ConfigError(name, `"${env[name]}" is not a valid HTTP header name`);
  // authorization is read as Bearer (KEYWARD_AUTHZ_ACCEPT_BEARER); x-keyward-* carry identity upstream.
  if (value === "authorization" || value.startsWith("x-keyward-") || value === "host") {
    throw new ConfigError(name, `"${value}" cannot carry the key; use KEYWARD_AUTHZ_ACCEPT_BEARER for authorization: Bearer`);
  }
  return value;
}

export function parseListen(raw: string, name = "KEYWARD_LISTEN"): { host: string; port: number } {
  // host:port, [v6]:port or :port (all interfaces).
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s]*)):(\d{1,5})$/.exec(raw.trim());
  if (!m) throw new ConfigError(name, `expected HOST:PORT (e.g. 127.0.0.1:50051 or [::1]:50051), got "${raw}"`);
  const port = Number(m[3]);
  if (port > 65535) throw new ConfigError(name, `port must be at most 65535, got ${port}`);
  const host = m[1] ?? (m[2] === "" ? "0.0.0.0" : m[2]!);
  return { host, port };
}

function changeFeed(env: Env, databaseUrl: string): ChangeFeedConfig {
  const mode = (env.KEYWARD_CHANGE_FEED?.trim() || "auto").toLowerCase();
  if (mode !== "auto" && mode !== "on" && mode !== "off") {
    throw new ConfigError("KEYWARD_CHANGE_FEED", `expected auto, on or off, got "${env.KEYWARD_CHANGE_FEED}"`);
  }
  const onPostgres = parseDatabaseUrl(databaseUrl).kind === "postgresql";
  if (mode === "on" && !onPostgres) {
    throw new ConfigError("KEYWARD_CHANGE_FEED", "on needs a PostgreSQL KEYWARD_DATABASE_URL (SQLite runs one instance)");
  }
  const url = env.KEYWARD_CHANGE_FEED_URL?.trim() || undefined;
  if (url !== undefined) {
    const name = "KEYWARD_CHANGE_FEED_URL";
    let kind;
    try {
      kind = parseDatabaseUrl(url).kind;
    } catch (error) {
      throw new ConfigError(name, (error as Error).message.replace(/^Invalid KEYWARD_DATABASE_URL: /, ""));
    }
    if (kind !== "postgresql") throw new ConfigError(name, "expected a postgres:// URL");
    if (!onPostgres) throw new ConfigError(name, "only applies when KEYWARD_DATABASE_URL is PostgreSQL");
  }
  return {
    mode: mode as ChangeFeedConfig["mode"],
    url,
    reconnectMaxSeconds: int(env, "KEYWARD_CHANGE_FEED_RECONNECT_MAX_SECONDS", 10, 1, 600),
    heartbeatSeconds: int(env, "KEYWARD_CHANGE_FEED_HEARTBEAT_SECONDS", 5, 1, 3600),
  };
}

/** KEYWARD_WORKERS: a count, or "auto" for one per CPU. SQLite allows one process. */
function workers(env: Env, databaseUrl: string): number {
  const name = "KEYWARD_WORKERS";
  const raw = env[name]?.trim().toLowerCase();
  if (raw && raw !== "auto" && !/^\d+$/.test(raw)) throw new ConfigError(name, `expected a whole number or "auto", got "${env[name]}"`);
  const n = raw === "auto" ? availableParallelism() : int(env, name, 1, 1, 256);
  if (n > 1 && parseDatabaseUrl(databaseUrl).kind === "sqlite") {
    throw new ConfigError(
      name,
      `${n} worker processes cannot share a SQLite database (single-instance); use 1, or a PostgreSQL KEYWARD_DATABASE_URL`,
    );
  }
  return n;
}

function readableFile(env: Env, name: string): string | undefined {
  const path = env[name]?.trim();
  if (!path) return undefined;
  try {
    accessSync(path, constants.R_OK);
  } catch {
    throw new ConfigError(name, `cannot read "${path}"`);
  }
  return path;
}

function tls(env: Env): TlsConfig | undefined {
  const certFile = readableFile(env, "KEYWARD_TLS_CERT_FILE");
  const keyFile = readableFile(env, "KEYWARD_TLS_KEY_FILE");
  const clientCaFile = readableFile(env, "KEYWARD_TLS_CLIENT_CA_FILE");
  const mode = env.KEYWARD_TLS_CLIENT_AUTH?.trim().toLowerCase() || undefined;
  if (!certFile && !keyFile) {
    if (clientCaFile || mode) throw new ConfigError(clientCaFile ? "KEYWARD_TLS_CLIENT_CA_FILE" : "KEYWARD_TLS_CLIENT_AUTH", "needs KEYWARD_TLS_CERT_FILE and KEYWARD_TLS_KEY_FILE");
    return undefined;
  }
  if (!certFile) throw new ConfigError("KEYWARD_TLS_CERT_FILE", "is required with KEYWARD_TLS_KEY_FILE");
  if (!keyFile) throw new ConfigError("KEYWARD_TLS_KEY_FILE", "is required with KEYWARD_TLS_CERT_FILE");
  if (mode !== undefined && mode !== "none" && mode !== "request" && mode !== "require") {
    throw new ConfigError("KEYWARD_TLS_CLIENT_AUTH", `expected none, request or require, got "${mode}"`);
  }
  const clientAuth = mode ?? (clientCaFile ? "require" : "none");
  if (clientAuth !== "none" && !clientCaFile) {
    throw new ConfigError("KEYWARD_TLS_CLIENT_AUTH", "needs KEYWARD_TLS_CLIENT_CA_FILE to verify client certificates");
  }
  return { certFile, keyFile, clientCaFile, clientAuth };
}

export function loadConfig(env: Env = process.env): Config {
  const databaseUrl = env.KEYWARD_DATABASE_URL?.trim() || "sqlite:./data/keyward.db";
  try {
    parseDatabaseUrl(databaseUrl);
  } catch (error) {
    throw new ConfigError("KEYWARD_DATABASE_URL", (error as Error).message.replace(/^Invalid KEYWARD_DATABASE_URL: /, ""));
  }
  const adminToken = env.KEYWARD_ADMIN_TOKEN || undefined;
  if (adminToken !== undefined && adminToken.length < MIN_ADMIN_TOKEN_LENGTH) {
    throw new ConfigError(
      "KEYWARD_ADMIN_TOKEN",
      `must be at least ${MIN_ADMIN_TOKEN_LENGTH} characters (e.g. openssl rand -hex 32)`,
    );
  }
  const logLevel = (env.KEYWARD_LOG_LEVEL || "info").toLowerCase();
  if (!["debug", "info", "warn", "error", "silent"].includes(logLevel)) {
    throw new ConfigError("KEYWARD_LOG_LEVEL", `expected debug, info, warn, error or silent, got "${logLevel}"`);
  }
  const ttlSeconds = int(env, "KEYWARD_CACHE_TTL_SECONDS", 60, 1, 86_400);
  return {
    listen: parseListen(env.KEYWARD_LISTEN || "127.0.0.1:50051"),
    databaseUrl,
    databasePoolMax: int(env, "KEYWARD_DATABASE_POOL_MAX", 10, 1, 1000),
    adminToken,
    hashPepper: env.KEYWARD_HASH_PEPPER || undefined,
    cache: {
      maxEntries: int(env, "KEYWARD_CACHE_MAX_ENTRIES", 100_000, 1, 50_000_000),
      ttlSeconds,
      negativeTtlSeconds: int(env, "KEYWARD_NEGATIVE_CACHE_TTL_SECONDS", Math.min(ttlSeconds, 30), 1, 86_400),
      staleIfErrorSeconds: int(env, "KEYWARD_STALE_IF_ERROR_SECONDS", 300, 0, 86_400),
    },
    usageFlushSeconds: int(env, "KEYWARD_USAGE_FLUSH_SECONDS", 5, 1, 3600),
    shutdownTimeoutSeconds: int(env, "KEYWARD_SHUTDOWN_TIMEOUT_SECONDS", 25, 0, 3600),
    maxMessageBytes: int(env, "KEYWARD_MAX_MESSAGE_BYTES", 1024 * 1024, 1024, 64 * 1024 * 1024),
    logLevel: logLevel as Config["logLevel"],
    authz: {
      apiKeyHeader: apiKeyHeader(env),
      acceptBearer: bool(env, "KEYWARD_AUTHZ_ACCEPT_BEARER", true),
      removeCredential: bool(env, "KEYWARD_AUTHZ_REMOVE_CREDENTIAL", true),
    },
    drainDelaySeconds: int(env, "KEYWARD_DRAIN_DELAY_SECONDS", 0, 0, 300),
    changeFeed: changeFeed(env, databaseUrl),
    workers: workers(env, databaseUrl),
    metrics: bool(env, "KEYWARD_METRICS", true),
    mallocTrim: bool(env, "KEYWARD_MALLOC_TRIM", true),
    idleGc: bool(env, "KEYWARD_IDLE_GC", true),
    logSampleRate: fraction(env, "KEYWARD_LOG_SAMPLE_RATE", 0),
    tls: tls(env),
  };
}

/** The configuration as it may be printed: secrets masked. */
export function redactedConfig(config: Config): Record<string, unknown> {
  const mask = (s: string | undefined) => (s ? "********" : undefined);
  return {
    ...config,
    databaseUrl: config.databaseUrl.replace(/\/\/([^:@/]+):[^@/]*@/, "//$1:********@"),
    changeFeed: { ...config.changeFeed, url: config.changeFeed.url?.replace(/\/\/([^:@/]+):[^@/]*@/, "//$1:********@") },
    adminToken: mask(config.adminToken),
    hashPepper: mask(config.hashPepper),
  };
}
