import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CONFIG_FILE_KEYS, configFileValues, loadEffectiveConfig } from "../../src/config-file.js";
import { ConfigError, loadConfig } from "../../src/config.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "keyward-config-file-"));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

async function file(name: string, text: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, text);
  return path;
}

function failure(run: () => unknown): ConfigError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error("expected a ConfigError");
}

const YAML = `# every group, and values typed the YAML way
listen: 0.0.0.0:8080
database:
  url: postgres://keyward:hunter2@db:5432/keyward
  poolMax: 5
adminToken: ${"t".repeat(32)}
hashPepper: pepper
cache:
  maxEntries: 500
  ttlSeconds: 20
  negativeTtlSeconds: 10
  staleIfErrorSeconds: 0
changeFeed:
  mode: on
  reconnectMaxSeconds: 30
  heartbeatSeconds: 2
usageFlushSeconds: 7
shutdownTimeoutSeconds: 9
drainDelaySeconds: 3
maxMessageBytes: 4096
logLevel: warn
logSampleRate: 0.25
workers: 2
metrics: false
mallocTrim: false
idleGc: off
authz:
  apiKeyHeader: X-Token
  acceptBearer: no
  removeCredential: false
`;

describe("config file", () => {
  it("maps one key to each variable loadConfig reads, and no two keys to one variable", async () => {
    const source = await readFile(new URL("../../src/config.ts", import.meta.url), "utf8");
    const read = new Set(source.match(/KEYWARD_[A-Z_]+/g));
    const mapped = Object.values(CONFIG_FILE_KEYS);
    expect(new Set(mapped).size).toBe(mapped.length);
    expect([...read].sort()).toEqual([...mapped].sort());
  });

  it("gives the same configuration as the same values in the environment (YAML)", async () => {
    const path = await file("all.yaml", YAML);
    const fromFile = loadEffectiveConfig({ env: {}, file: path });
    const fromEnv = loadConfig({
      KEYWARD_LISTEN: "0.0.0.0:8080",
      KEYWARD_DATABASE_URL: "postgres://keyward:hunter2@db:5432/keyward",
      KEYWARD_DATABASE_POOL_MAX: "5",
      KEYWARD_ADMIN_TOKEN: "t".repeat(32),
      KEYWARD_HASH_PEPPER: "pepper",
      KEYWARD_CACHE_MAX_ENTRIES: "500",
      KEYWARD_CACHE_TTL_SECONDS: "20",
      KEYWARD_NEGATIVE_CACHE_TTL_SECONDS: "10",
      KEYWARD_STALE_IF_ERROR_SECONDS: "0",
      KEYWARD_CHANGE_FEED: "on",
      KEYWARD_CHANGE_FEED_RECONNECT_MAX_SECONDS: "30",
      KEYWARD_CHANGE_FEED_HEARTBEAT_SECONDS: "2",
      KEYWARD_USAGE_FLUSH_SECONDS: "7",
      KEYWARD_SHUTDOWN_TIMEOUT_SECONDS: "9",
      KEYWARD_DRAIN_DELAY_SECONDS: "3",
      KEYWARD_MAX_MESSAGE_BYTES: "4096",
      KEYWARD_LOG_LEVEL: "warn",
      KEYWARD_LOG_SAMPLE_RATE: "0.25",
      KEYWARD_WORKERS: "2",
      KEYWARD_METRICS: "false",
      KEYWARD_MALLOC_TRIM: "false",
      KEYWARD_IDLE_GC: "false",
      KEYWARD_AUTHZ_API_KEY_HEADER: "X-Token",
      KEYWARD_AUTHZ_ACCEPT_BEARER: "no",
      KEYWARD_AUTHZ_REMOVE_CREDENTIAL: "false",
    });
    expect(fromFile.config).toEqual(fromEnv);
    expect(fromFile.config).not.toEqual(loadConfig({}));
    expect(fromFile.file).toBe(path);
    expect(fromFile.sources.KEYWARD_CACHE_TTL_SECONDS).toBe("file");
    expect(fromFile.sources.KEYWARD_TLS_CERT_FILE).toBe("default");
  });

  it("reads JSON, and TLS file paths", async () => {
    const cert = await file("cert.pem", "not checked here");
    const path = await file(
      "keyward.json",
      JSON.stringify({ database: { url: "sqlite:/tmp/x.db" }, cache: { ttlSeconds: 15 }, tls: { certFile: cert, keyFile: cert, clientCaFile: cert, clientAuth: "request" } }),
    );
    const { config } = loadEffectiveConfig({ env: {}, file: path });
    expect(config.databaseUrl).toBe("sqlite:/tmp/x.db");
    expect(config.cache.ttlSeconds).toBe(15);
    expect(config.tls).toEqual({ certFile: cert, keyFile: cert, clientCaFile: cert, clientAuth: "request" });
  });

  it("lets the environment win over the file, and the file over defaults", async () => {
    const path = await file("precedence.yaml", "listen: 127.0.0.1:7000\ncache:\n  ttlSeconds: 20\n  maxEntries: 10\n");
    const { config, sources } = loadEffectiveConfig({
      env: { KEYWARD_CACHE_TTL_SECONDS: "40", KEYWARD_CACHE_MAX_ENTRIES: "", KEYWARD_LOG_LEVEL: "error" },
      file: path,
    });
    expect(config.cache.ttlSeconds).toBe(40);
    expect(sources.KEYWARD_CACHE_TTL_SECONDS).toBe("env");
    // An empty variable counts as unset, as it does without a file.
    expect(config.cache.maxEntries).toBe(10);
    expect(sources.KEYWARD_CACHE_MAX_ENTRIES).toBe("file");
    expect(config.listen).toEqual({ host: "127.0.0.1", port: 7000 });
    expect(config.logLevel).toBe("error");
    expect(sources.KEYWARD_LOG_LEVEL).toBe("env");
    expect(config.usageFlushSeconds).toBe(5);
    expect(sources.KEYWARD_USAGE_FLUSH_SECONDS).toBe("default");
  });

  it("finds the file through KEYWARD_CONFIG; an explicit file wins over it", async () => {
    const a = await file("a.yaml", "cache:\n  ttlSeconds: 11\n");
    const b = await file("b.yaml", "cache:\n  ttlSeconds: 22\n");
    expect(loadEffectiveConfig({ env: { KEYWARD_CONFIG: a } }).config.cache.ttlSeconds).toBe(11);
    expect(loadEffectiveConfig({ env: { KEYWARD_CONFIG: a }, file: b }).config.cache.ttlSeconds).toBe(22);
    expect(loadEffectiveConfig({ env: {} }).file).toBeUndefined();
  });

  it("accepts an empty file, an empty group and null values (unset)", async () => {
    expect(loadEffectiveConfig({ env: {}, file: await file("empty.yaml", "") }).config).toEqual(loadConfig({}));
    const path = await file("nulls.yaml", "cache:\nadminToken:\nlisten: ~\n");
    expect(loadEffectiveConfig({ env: {}, file: path }).config).toEqual(loadConfig({}));
  });

  it("names the file, its key and the variable when a file value is invalid", async () => {
    const path = await file("keyward.yaml", "cache:\n  ttlSeconds: soon\n");
    const error = failure(() => loadEffectiveConfig({ env: {}, file: path }));
    expect(error.message).toBe(`${path}: cache.ttlSeconds (KEYWARD_CACHE_TTL_SECONDS): expected a whole number, got "soon"`);
    expect(error.variable).toBe("KEYWARD_CACHE_TTL_SECONDS");
    // The same bad value from the environment is reported as before, without the file.
    const fromEnv = failure(() => loadEffectiveConfig({ env: { KEYWARD_CACHE_TTL_SECONDS: "soon" }, file: path }));
    expect(fromEnv.message).toBe('KEYWARD_CACHE_TTL_SECONDS: expected a whole number, got "soon"');
  });

  it("applies loadConfig's cross-variable rules to file values", async () => {
    const path = await file("sqlite-workers.yaml", "database:\n  url: sqlite:/tmp/k.db\nworkers: 4\n");
    expect(failure(() => loadEffectiveConfig({ env: {}, file: path })).message).toMatch(
      new RegExp(`^${path}: workers \\(KEYWARD_WORKERS\\): 4 worker processes cannot share a SQLite database`),
    );
    const token = await file("token.json", JSON.stringify({ adminToken: "short" }));
    expect(failure(() => loadEffectiveConfig({ env: {}, file: token })).message).toMatch(
      new RegExp(`^${token}: adminToken \\(KEYWARD_ADMIN_TOKEN\\): must be at least 24 characters`),
    );
  });

  it.each([
    ["a typo at the top level", { lisen: ":1" }, 'unknown key "lisen" (known at the top level: listen, database, adminToken'],
    ["a typo in a group", { cache: { ttlSecond: 5 } }, 'unknown key "cache.ttlSecond" (known under cache: maxEntries, ttlSeconds, negativeTtlSeconds, staleIfErrorSeconds)'],
    ["a key under a value", { listen: { port: 1 } }, "listen (KEYWARD_LISTEN): expected a single value, got a mapping"],
    ["a list value", { authz: { apiKeyHeader: ["a", "b"] } }, "authz.apiKeyHeader (KEYWARD_AUTHZ_API_KEY_HEADER): expected a single value, got a list"],
    ["a value where a group belongs", { cache: 5 }, "cache: expected a mapping of maxEntries, ttlSeconds"],
    ["a variable name", { KEYWARD_LISTEN: ":1" }, 'unknown key "KEYWARD_LISTEN": the file uses nested names; write listen for KEYWARD_LISTEN'],
    ["a dotted key", { "cache.ttlSeconds": 5 }, 'unknown key "cache.ttlSeconds": write nested keys'],
    ["a list at the top", [1], "expected a mapping of keys"],
  ])("rejects %s, naming the file and key", (_what, parsed, message) => {
    const error = failure(() => configFileValues("keyward.yaml", parsed));
    expect(error.message).toContain(`keyward.yaml: ${message}`);
  });

  it("reports unreadable files and syntax errors with the file name", async () => {
    const missing = join(dir, "missing.yaml");
    expect(failure(() => loadEffectiveConfig({ env: {}, file: missing })).message).toBe(`${missing}: cannot read the config file (ENOENT)`);
    const json = await file("broken.json", '{"cache": {');
    expect(failure(() => loadEffectiveConfig({ env: {}, file: json })).message).toMatch(new RegExp(`^${json}: not valid JSON: `));
    const yaml = await file("broken.yaml", "cache:\n  ttlSeconds: 1\n  ttlSeconds: 2\n");
    expect(failure(() => loadEffectiveConfig({ env: {}, file: yaml })).message).toMatch(new RegExp(`^${yaml}: not valid YAML: Map keys must be unique`));
  });
});
