// KEYWARD_WORKERS (the bench's scaling option): N worker processes on one
// address through node:cluster, each a full keyward; SIGTERM drains every
// worker and the primary exits 0; SQLite and bad values are refused at start
// with a message naming the variable.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { VerifyCode } from "../../src/gen/keyward/v1/keys_pb.js";
import { ConfigError, loadConfig } from "../../src/config.js";
import { createAdminClient } from "../../bench/lib/admin.js";
import { childPids, startKeywardProcess, type ChildServer } from "../../bench/lib/processes.js";
import { runVerifyLoad, verifyBodies } from "../../bench/lib/verify-load.js";
import { testDatabases, type TestDatabaseHandle } from "../helpers/databases.js";
import { runMain } from "../helpers/process.js";

const ADMIN_TOKEN = "bench-test-admin-token-0123456789";
const postgres = (await testDatabases()).find((f) => f.kind === "postgresql")!;

describe("KEYWARD_WORKERS configuration", () => {
  const config = (env: Record<string, string>) => loadConfig({ KEYWARD_DATABASE_URL: "postgres://u@127.0.0.1:5432/k", ...env });

  it("defaults to 1 and accepts a count or auto", () => {
    expect(config({}).workers).toBe(1);
    expect(config({ KEYWARD_WORKERS: "3" }).workers).toBe(3);
    expect(config({ KEYWARD_WORKERS: "auto" }).workers).toBeGreaterThanOrEqual(1);
  });

  it.each([
    ["0", /KEYWARD_WORKERS: must be between 1 and 256/],
    ["two", /KEYWARD_WORKERS: expected a whole number or "auto"/],
    ["-1", /KEYWARD_WORKERS: expected a whole number or "auto"/],
  ])("refuses %j naming the variable", (value, message) => {
    expect(() => config({ KEYWARD_WORKERS: value })).toThrow(ConfigError);
    expect(() => config({ KEYWARD_WORKERS: value })).toThrow(message);
  });

  it("refuses more than one worker on SQLite, which is single-instance", () => {
    expect(() => loadConfig({ KEYWARD_DATABASE_URL: "sqlite::memory:", KEYWARD_WORKERS: "2" })).toThrow(
      /KEYWARD_WORKERS: 2 worker processes cannot share a SQLite database/,
    );
    expect(loadConfig({ KEYWARD_DATABASE_URL: "sqlite::memory:", KEYWARD_WORKERS: "1" }).workers).toBe(1);
  });

  it("the server exits 2 with that message before forking anything", async () => {
    const { output, exited } = runMain({ KEYWARD_DATABASE_URL: "sqlite::memory:", KEYWARD_WORKERS: "2" });
    expect(await exited).toBe(2);
    expect(output()).toMatch(/invalid configuration: KEYWARD_WORKERS: 2 worker processes cannot share a SQLite database/);
  });
});

describe.runIf(postgres.available)("KEYWARD_WORKERS=2 on PostgreSQL", () => {
  let handle: TestDatabaseHandle;
  let kw: ChildServer;

  beforeAll(async () => {
    handle = await postgres.create();
    kw = await startKeywardProcess({ env: { KEYWARD_DATABASE_URL: handle.url, KEYWARD_ADMIN_TOKEN: ADMIN_TOKEN, KEYWARD_WORKERS: "2" } });
    const deadline = Date.now() + 30_000;
    while (!/keyward workers listening/.test(kw.output()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  }, 60_000);
  afterAll(async () => {
    if (kw && kw.child.exitCode === null) await kw.stop();
    await handle?.drop();
  });

  it("two workers serve the one address; SIGTERM drains both and the primary exits 0", async () => {
    const listening = /"workers":\[(\d+),(\d+)\][^\n]*"msg":"keyward workers listening"/.exec(kw.output());
    expect(listening, kw.output()).not.toBeNull();
    const workers = [Number(listening![1]), Number(listening![2])];
    expect(childPids(kw.pid).sort()).toEqual([...workers].sort());

    const baseUrl = `http://127.0.0.1:${kw.port}`;
    const issued = await createAdminClient(baseUrl, ADMIN_TOKEN).issue("workers", ["a"], 0);
    // Many connections: the primary hands them to both workers.
    const result = await runVerifyLoad({ baseUrl, bodies: verifyBodies([issued.key], ["a"]), requests: 400, connections: 8, streams: 4, expected: VerifyCode.VALID });
    expect(result.ok).toBe(400);

    expect(await kw.stop()).toBe(0);
    const out = kw.output();
    expect(out.match(/"msg":"stopped"/g)).toHaveLength(2);
    expect(out).toMatch(/"failed":false[^\n]*"msg":"workers stopped"/);
    for (const pid of workers) expect(() => process.kill(pid, 0)).toThrow();
  }, 60_000);
});
