// Optional configuration file (YAML or JSON) given by --config or
// KEYWARD_CONFIG. Each nested key stands for exactly one KEYWARD_* variable:
// the file is turned into those variables and validated by loadConfig, so every
// rule lives in one place. A variable set in the environment wins over the file.
import { readFileSync } from "node:fs";
import { extname } from "node:path";
import { parse as parseYaml } from "yaml";
import { ConfigError, loadConfig, type Config, type Env } from "./config.js";

/** Config file key (dotted path of nested keys) → the variable it sets. */
export const CONFIG_FILE_KEYS = {
  listen: "KEYWARD_LISTEN",
  "database.url": "KEYWARD_DATABASE_URL",
  "database.poolMax": "KEYWARD_DATABASE_POOL_MAX",
  adminToken: "KEYWARD_ADMIN_TOKEN",
  hashPepper: "KEYWARD_HASH_PEPPER",
  "cache.maxEntries": "KEYWARD_CACHE_MAX_ENTRIES",
  "cache.ttlSeconds": "KEYWARD_CACHE_TTL_SECONDS",
  "cache.negativeTtlSeconds": "KEYWARD_NEGATIVE_CACHE_TTL_SECONDS",
  "cache.staleIfErrorSeconds": "KEYWARD_STALE_IF_ERROR_SECONDS",
  "changeFeed.mode": "KEYWARD_CHANGE_FEED",
  "changeFeed.url": "KEYWARD_CHANGE_FEED_URL",
  "changeFeed.reconnectMaxSeconds": "KEYWARD_CHANGE_FEED_RECONNECT_MAX_SECONDS",
  "changeFeed.heartbeatSeconds": "KEYWARD_CHANGE_FEED_HEARTBEAT_SECONDS",
  usageFlushSeconds: "KEYWARD_USAGE_FLUSH_SECONDS",
  shutdownTimeoutSeconds: "KEYWARD_SHUTDOWN_TIMEOUT_SECONDS",
  drainDelaySeconds: "KEYWARD_DRAIN_DELAY_SECONDS",
  maxMessageBytes: "KEYWARD_MAX_MESSAGE_BYTES",
  logLevel: "KEYWARD_LOG_LEVEL",
  logSampleRate: "KEYWARD_LOG_SAMPLE_RATE",
  workers: "KEYWARD_WORKERS",
  metrics: "KEYWARD_METRICS",
  mallocTrim: "KEYWARD_MALLOC_TRIM",
  idleGc: "KEYWARD_IDLE_GC",
  "authz.apiKeyHeader": "KEYWARD_AUTHZ_API_KEY_HEADER",
  "authz.acceptBearer": "KEYWARD_AUTHZ_ACCEPT_BEARER",
  "authz.removeCredential": "KEYWARD_AUTHZ_REMOVE_CREDENTIAL",
  "tls.certFile": "KEYWARD_TLS_CERT_FILE",
  "tls.keyFile": "KEYWARD_TLS_KEY_FILE",
  "tls.clientCaFile": "KEYWARD_TLS_CLIENT_CA_FILE",
  "tls.clientAuth": "KEYWARD_TLS_CLIENT_AUTH",
} as const satisfies Record<string, `KEYWARD_${string}`>;

export type ConfigFileKey = keyof typeof CONFIG_FILE_KEYS;
export type ConfigVariable = (typeof CONFIG_FILE_KEYS)[ConfigFileKey];
export type ConfigSource = "default" | "file" | "env";

/** The variable naming the config file when --config is not given. */
export const CONFIG_FILE_VARIABLE = "KEYWARD_CONFIG";

export interface ConfigFileValues {
  /** The path as given, used in messages. */
  path: string;
  /** Variable → value, as the environment would spell it. */
  values: Partial<Record<ConfigVariable, string>>;
}

export interface EffectiveConfig {
  config: Config;
  /** The config file read, as given; undefined when there is none. */
  file: string | undefined;
  /** Where each variable's value came from. */
  sources: Record<ConfigVariable, ConfigSource>;
}

const KEYS = Object.keys(CONFIG_FILE_KEYS) as ConfigFileKey[];
const VARIABLES = new Set<string>(Object.values(CONFIG_FILE_KEYS));
// Every proper prefix of a key is a group that must hold a mapping.
const GROUPS = new Set(KEYS.flatMap((key) => key.split(".").slice(0, -1).map((_, i, parts) => parts.slice(0, i + 1).join("."))));

const fileError = (path: string, detail: string) => new ConfigError(CONFIG_FILE_VARIABLE, detail, path);

/** The keys allowed directly under `group` ("" for the top level). */
function childrenOf(group: string): string[] {
  const prefix = group === "" ? "" : `${group}.`;
  const names = KEYS.filter((key) => key.startsWith(prefix)).map((key) => key.slice(prefix.length).split(".")[0]!);
  return [...new Set(names)];
}

function isMapping(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value) && Object.getPrototypeOf(value) === Object.prototype;
}

function parseText(path: string, text: string): unknown {
  if (extname(path).toLowerCase() === ".json") {
    try {
      return JSON.parse(text);
    } catch (error) {
      throw fileError(path, `not valid JSON: ${(error as Error).message}`);
    }
  }
  try {
    // YAML 1.2 core schema: yes/no stay strings, duplicate keys are errors.
    return parseYaml(text, { uniqueKeys: true, prettyErrors: true });
  } catch (error) {
    throw fileError(path, `not valid YAML: ${(error as Error).message.split("\n")[0]}`);
  }
}

/** Maps a parsed file to variables; throws ConfigError naming the file and key. */
export function configFileValues(path: string, parsed: unknown): ConfigFileValues {
  const values: Partial<Record<ConfigVariable, string>> = {};
  if (parsed === null || parsed === undefined) return { path, values }; // an empty file
  if (!isMapping(parsed)) throw fileError(path, `expected a mapping of keys (${childrenOf("").join(", ")}) at the top level`);

  const walk = (node: Record<string, unknown>, group: string) => {
    for (const [name, value] of Object.entries(node)) {
      const key = group === "" ? name : `${group}.${name}`;
      if (name.includes(".")) {
        // One spelling per value: a dotted key next to a nested one would make one silently win.
        throw fileError(path, `unknown key "${key}": write nested keys (${key.split(".").join(": ")}: ...), not dotted ones`);
      }
      if (Object.hasOwn(CONFIG_FILE_KEYS, key)) {
        const variable = CONFIG_FILE_KEYS[key as ConfigFileKey];
        const scalar = scalarValue(value);
        if (scalar === false) {
          throw new ConfigError(variable, `expected a single value, got ${Array.isArray(value) ? "a list" : "a mapping"}`, `${path}: ${key} (${variable})`);
        }
        if (scalar !== undefined) values[variable] = scalar;
      } else if (GROUPS.has(key)) {
        if (value === null) continue; // "cache:" with nothing under it
        if (!isMapping(value)) throw fileError(path, `${key}: expected a mapping of ${childrenOf(key).join(", ")}`);
        walk(value, key);
      } else {
        throw fileError(path, unknownKeyMessage(key, group));
      }
    }
  };
  walk(parsed, "");
  return { path, values };
}

/** The value as the environment would spell it; undefined for null (unset); false when not a scalar. */
function scalarValue(value: unknown): string | undefined | false {
  if (value === null || value === undefined) return undefined;
  if (typeof value === "string") return value;
  if (typeof value === "number" || typeof value === "boolean" || typeof value === "bigint") return String(value);
  return false;
}

function unknownKeyMessage(key: string, group: string): string {
  if (VARIABLES.has(key)) {
    const known = KEYS.find((k) => CONFIG_FILE_KEYS[k] === key)!;
    return `unknown key "${key}": the file uses nested names; write ${known} for ${key}`;
  }
  const where = group === "" ? "at the top level" : `under ${group}`;
  return `unknown key "${key}" (known ${where}: ${childrenOf(group).join(", ")})`;
}

export function readConfigFile(path: string): ConfigFileValues {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    const code = (error as { code?: string }).code;
    throw fileError(path, `cannot read the config file${code ? ` (${code})` : ""}`);
  }
  return configFileValues(path, parseText(path, text));
}

const isSet = (value: string | undefined): value is string => value !== undefined && value.trim() !== "";

export interface EffectiveConfigOptions {
  /** Defaults to process.env. */
  env?: Env;
  /** --config; otherwise KEYWARD_CONFIG names the file, if set. */
  file?: string;
}

/**
 * The configuration from environment, config file and defaults, in that order
 * of precedence (an empty variable counts as unset). Errors about a value
 * taken from the file name the file and key: `keyward.yaml: cache.ttlSeconds
 * (KEYWARD_CACHE_TTL_SECONDS): expected a whole number, got "soon"`.
 */
export function loadEffectiveConfig(options: EffectiveConfigOptions = {}): EffectiveConfig {
  const env = options.env ?? process.env;
  const path = isSet(options.file) ? options.file : isSet(env[CONFIG_FILE_VARIABLE]) ? env[CONFIG_FILE_VARIABLE] : undefined;
  const file = path === undefined ? undefined : readConfigFile(path);

  const merged: Env = { ...env };
  const sources = {} as Record<ConfigVariable, ConfigSource>;
  const keyOf = {} as Record<string, ConfigFileKey>;
  for (const key of KEYS) {
    const variable = CONFIG_FILE_KEYS[key];
    keyOf[variable] = key;
    const fromFile = file?.values[variable];
    if (isSet(env[variable])) {
      sources[variable] = "env";
    } else if (fromFile !== undefined) {
      merged[variable] = fromFile;
      sources[variable] = "file";
    } else {
      sources[variable] = "default";
    }
  }
  try {
    return { config: loadConfig(merged), file: path, sources };
  } catch (error) {
    if (error instanceof ConfigError && path !== undefined && sources[error.variable as ConfigVariable] === "file") {
      throw new ConfigError(error.variable, error.detail, `${path}: ${keyOf[error.variable]} (${error.variable})`);
    }
    throw error;
  }
}
