import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig, parseListen, redactedConfig } from "../../src/config.js";

describe("configuration", () => {
  it("has working defaults: SQLite next to the process, loopback listener", () => {
    const config = loadConfig({});
    expect(config.listen).toEqual({ host: "127.0.0.1", port: 50051 });
    expect(config.databaseUrl).toBe("sqlite:./data/keyward.db");
    expect(config.cache).toEqual({ maxEntries: 100_000, ttlSeconds: 60, negativeTtlSeconds: 30, staleIfErrorSeconds: 300 });
    expect(config.adminToken).toBeUndefined();
    expect(config.mallocTrim).toBe(true);
    expect(loadConfig({ KEYWARD_MALLOC_TRIM: "off" }).mallocTrim).toBe(false);
    expect(config.idleGc).toBe(true);
    expect(loadConfig({ KEYWARD_IDLE_GC: "off" }).idleGc).toBe(false);
  });

  it("parses listen addresses", () => {
    expect(parseListen("0.0.0.0:8080")).toEqual({ host: "0.0.0.0", port: 8080 });
    expect(parseListen("[::1]:50051")).toEqual({ host: "::1", port: 50051 });
    expect(parseListen(":9000")).toEqual({ host: "0.0.0.0", port: 9000 });
    expect(parseListen("localhost:0")).toEqual({ host: "localhost", port: 0 });
  });

  it.each([
    ["KEYWARD_LISTEN", "50051"],
    ["KEYWARD_LISTEN", "127.0.0.1:99999"],
    ["KEYWARD_DATABASE_URL", "mysql://x"],
    ["KEYWARD_DATABASE_URL", "sqlite:"],
    ["KEYWARD_ADMIN_TOKEN", "short"],
    ["KEYWARD_CACHE_MAX_ENTRIES", "lots"],
    ["KEYWARD_CACHE_MAX_ENTRIES", "0"],
    ["KEYWARD_CACHE_TTL_SECONDS", "-1"],
    ["KEYWARD_USAGE_FLUSH_SECONDS", "1.5"],
    ["KEYWARD_LOG_LEVEL", "chatty"],
  ])("stops on a bad %s (%s) with a message naming it", (variable, value) => {
    let error: unknown;
    try {
      loadConfig({ [variable]: value });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).variable).toBe(variable);
    expect((error as Error).message.startsWith(`${variable}: `)).toBe(true);
  });

  it("masks secrets when printed", () => {
    const config = loadConfig({
      KEYWARD_ADMIN_TOKEN: "a".repeat(40),
      KEYWARD_HASH_PEPPER: "pepper-value",
      KEYWARD_DATABASE_URL: "postgres://keyward:hunter2@db:5432/keyward",
    });
    const printed = JSON.stringify(redactedConfig(config));
    expect(printed).not.toContain("a".repeat(40));
    expect(printed).not.toContain("pepper-value");
    expect(printed).not.toContain("hunter2");
    expect(printed).toContain("postgres://keyward:********@db:5432/keyward");
  });
});
