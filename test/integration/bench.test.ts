// The bench's correctness checks at a small scale (npm run bench does the
// timing): the compiled keyward as a child process on PostgreSQL, reached
// through the bench's wire-level statement counter; every h2load scenario is
// probed, run with a few hundred requests and checked (counts, bytes, usage
// count); the statement counter shows no query per cache hit and exactly one
// per cold miss. Nothing here asserts a timing.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createKeyHasher, generateKey } from "../../src/core/key-format.js";
import { VerifyCode } from "../../src/gen/keyward/v1/keys_pb.js";
import { createDatabase } from "../../src/storage/database.js";
import { createAdminClient, type AdminClient, type IssuedKey } from "../../bench/lib/admin.js";
import { createCeilingServer, type CeilingServer } from "../../bench/lib/ceiling-server.js";
import { createTransportServer, type TransportServer } from "../../bench/lib/transport-server.js";
import { hasH2load } from "../../bench/lib/h2load.js";
import { createBenchDatabase, seedKeys, type BenchDatabase } from "../../bench/lib/pg-bench.js";
import { countsBetween, createPgWireCounter, type PgWireCounter } from "../../bench/lib/pg-wire-counter.js";
import { startKeywardProcess, type ChildServer } from "../../bench/lib/processes.js";
import { createScenarios, runScenario, type Scenario, type ScenarioId } from "../../bench/lib/scenarios.js";
import { loadProblems, malformedFrom, runVerifyLoad, verifyBodies } from "../../bench/lib/verify-load.js";
import { testDatabases } from "../helpers/databases.js";
import { assertBuilt } from "../helpers/process.js";

const PG_URL = process.env.KEYWARD_TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const ADMIN_TOKEN = "bench-test-admin-token-0123456789";
const SCOPES = ["bench:read"];
const REQUESTS = 300;

const postgres = (await testDatabases()).find((f) => f.kind === "postgresql")!;
const h2load = hasH2load();
if (!h2load) {
  const message = "h2load (Debian nghttp2-client) is not installed";
  if (process.env.CI) throw new Error(`${message}; .ci/run installs it`);
  console.warn(`WARNING: ${message}; skipping the bench correctness tests`);
}
const runnable = postgres.available && h2load;

describe.runIf(runnable)("the bench's checks, small scale, on PostgreSQL", () => {
  let db: BenchDatabase;
  let counter: PgWireCounter;
  let kw: ChildServer;
  let ceiling: CeilingServer;
  let kwUrl: string;
  let ceilingUrl: string;
  let transport: TransportServer;
  let transportUrl: string;
  let admin: AdminClient;
  let workDir: string;
  let scenarios: Scenario[];
  let hot: { verify: IssuedKey; check: IssuedKey };
  const seeded = Array.from({ length: 200 }, () => generateKey());
  const window = () => {
    const start = counter.counts();
    return () => countsBetween(start, counter.counts());
  };

  beforeAll(async () => {
    assertBuilt();
    db = await createBenchDatabase(PG_URL);
    const migrator = await createDatabase({ url: db.url });
    await migrator.migrate();
    await migrator.close();
    // Filler rows too, so the table is not trivially small.
    await seedKeys(db.url, { keys: seeded, hasher: createKeyHasher(), fillerRows: 5_000, scopes: ["bench:read", "bench:write"] });
    const target = new URL(PG_URL);
    counter = await createPgWireCounter({ host: target.hostname, port: Number(target.port || 5432) });
    kw = await startKeywardProcess({
      env: {
        KEYWARD_DATABASE_URL: counter.relayUrl(db.url),
        KEYWARD_ADMIN_TOKEN: ADMIN_TOKEN,
        KEYWARD_CACHE_TTL_SECONDS: "3600",
        KEYWARD_NEGATIVE_CACHE_TTL_SECONDS: "3600",
        // Usage write-behind is covered by cache.test.ts; here a flush must not land inside a window.
        KEYWARD_USAGE_FLUSH_SECONDS: "3600",
      },
    });
    kwUrl = `http://127.0.0.1:${kw.port}`;
    ceiling = createCeilingServer();
    ceilingUrl = `http://127.0.0.1:${(await ceiling.listen("127.0.0.1", 0)).port}`;
    transport = createTransportServer();
    transportUrl = `http://127.0.0.1:${(await transport.listen("127.0.0.1", 0)).port}`;
    admin = createAdminClient(kwUrl, ADMIN_TOKEN);
    hot = {
      verify: await admin.issue("bench verify", ["bench:read", "bench:write"], 2_000_000_000),
      check: await admin.issue("bench check", ["bench:read", "bench:write"], 2_000_000_000),
    };
    workDir = mkdtempSync(join(tmpdir(), "keyward-bench-test-"));
    scenarios = createScenarios({ ...hot, unknown: generateKey().key, malformed: malformedFrom(generateKey().key), scopes: SCOPES }, workDir);
  }, 120_000);

  afterAll(async () => {
    const code = await kw?.stop();
    await ceiling?.close();
    await transport?.close();
    await counter?.close();
    await db?.drop();
    if (workDir) rmSync(workDir, { recursive: true, force: true });
    expect(code).toBe(0);
  }, 60_000);

  const ids: ScenarioId[] = ["ceiling", "transport", "health", "verify-hit", "check-hit", "connect-json-h1", "verify-unknown-repeated", "verify-malformed"];
  it.each(ids)("%s: every answer is the expected one, and a cache hit costs no statement", async (id) => {
    const scenario = scenarios.find((s) => s.id === id)!;
    const run = await runScenario(scenario, {
      baseUrl: scenario.target === "ceiling" ? ceilingUrl : scenario.target === "transport" ? transportUrl : kwUrl,
      requests: REQUESTS,
      clients: 4,
      streams: 4,
      logFile: join(workDir, `${id}.log`),
      admin,
      counter,
    });
    expect(run.problems).toEqual([]);
    expect(run.answer).toBe(scenario.expected);
    expect(run.result.done).toBe(REQUESTS);
    // The repeated unknown key was looked up once, by the probe, before the window.
    expect(run.counts).toMatchObject({ keyLookups: 0, writes: 0 });
  }, 60_000);

  it("a wrong answer is caught: a Verify scenario expecting VALID for an unknown key reports problems", async () => {
    const real = scenarios.find((s) => s.id === "verify-hit")!;
    const unknown = scenarios.find((s) => s.id === "verify-unknown-repeated")!;
    // The hit's expectations (VALID, usage count, its size) with the unknown key's bytes.
    const wrong: Scenario = { ...real, body: unknown.body, bodyFile: unknown.bodyFile, probe: unknown.probe };
    const run = await runScenario(wrong, { baseUrl: kwUrl, requests: 100, clients: 2, streams: 2, logFile: join(workDir, "wrong.log"), admin });
    expect(run.problems.join("\n")).toMatch(/probe answered VERIFY_CODE_NOT_FOUND, expected VERIFY_CODE_VALID/);
    expect(run.problems.join("\n")).toMatch(/usage count grew by 0, not 100/);
  }, 60_000);

  it("a cold miss costs exactly one statement, a lookup by hash; the same keys again cost none", async () => {
    const bodies = verifyBodies(seeded.slice(0, 60).map((k) => k.key), SCOPES);
    for (const [expected, streams] of [[bodies.length, 1], [0, 4]] as const) {
      const done = window();
      const result = await runVerifyLoad({ baseUrl: kwUrl, bodies, requests: bodies.length, connections: 1, streams, expected: VerifyCode.VALID });
      const counts = done();
      expect(loadProblems(result)).toEqual([]);
      expect(result.ok).toBe(bodies.length);
      expect(counts).toMatchObject({ keyLookups: expected, writes: 0 });
      expect(counts.statements - counts.otherReads).toBe(expected); // other reads: the change feed's heartbeat only
    }
  }, 60_000);

  it("distinct unknown keys: one lookup each, then remembered; cached keys are not evicted by them", async () => {
    const unknown = verifyBodies(Array.from({ length: 150 }, () => generateKey().key), SCOPES);
    for (const expected of [unknown.length, 0]) {
      const done = window();
      const result = await runVerifyLoad({ baseUrl: kwUrl, bodies: unknown, requests: unknown.length, connections: 2, streams: 8, expected: VerifyCode.NOT_FOUND });
      expect(loadProblems(result)).toEqual([]);
      expect(done()).toMatchObject({ keyLookups: expected, writes: 0 });
    }
    const cached = verifyBodies(seeded.slice(0, 60).map((k) => k.key), SCOPES);
    const done = window();
    const result = await runVerifyLoad({ baseUrl: kwUrl, bodies: cached, requests: cached.length, connections: 1, streams: 4, expected: VerifyCode.VALID });
    expect(loadProblems(result)).toEqual([]);
    expect(done().keyLookups).toBe(0);
  }, 60_000);

  it("the node client's checks catch a wrong answer too", async () => {
    const bodies = verifyBodies([hot.verify.key], SCOPES);
    const result = await runVerifyLoad({ baseUrl: kwUrl, bodies, requests: 20, connections: 1, streams: 2, expected: VerifyCode.NOT_FOUND });
    expect(result.ok).toBe(0);
    // The problem quotes each answer's first bytes, whose length varies with the key's
    // usage (last_used_at's nanos, request_count): possibly several lines, 20 in all.
    const problems = loadProblems(result);
    for (const p of problems) expect(p).toMatch(/^\d+ × answer is not VERIFY_CODE_NOT_FOUND/);
    expect(problems.reduce((n, p) => n + Number(p.split(" ")[0]), 0)).toBe(20);
  }, 60_000);
});
