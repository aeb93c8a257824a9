// The compiled `keyward` bin (dist/cli.js, built by `npm test`) as a child
// process: every command against real databases, its exit codes, its help,
// `config` masking, and keys issued by the CLI verifying on a running server.
import { spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { COMMANDS } from "../../src/cli/commands.js";
import { createKeyHasher } from "../../src/core/key-format.js";
import { KeyService, VerifyCode } from "../../src/gen/keyward/v1/keys_pb.js";
import { createDatabase } from "../../src/storage/database.js";
import { connectClients } from "../helpers/clients.js";
import { testDatabases } from "../helpers/databases.js";
import { assertBuilt, CLI, startMain } from "../helpers/process.js";
import { bearer } from "../helpers/server.js";

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `keyward ...args` with only PATH and `env` in its environment. */
function keyward(args: string[], env: Record<string, string> = {}): Promise<Result> {
  assertBuilt();
  const child = spawn(process.execPath, [CLI, ...args], { env: { PATH: process.env.PATH ?? "", ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d) => (stdout += String(d)));
  child.stderr.on("data", (d) => (stderr += String(d)));
  return new Promise((resolve) => child.once("close", (code) => resolve({ code, stdout, stderr })));
}

/** Asserts success and parses stdout as JSON. */
function json<T = Record<string, unknown>>(result: Result): T {
  expect(result.stderr).toBe("");
  expect(result.code).toBe(0);
  return JSON.parse(result.stdout) as T;
}

// Skipped with a warning when PostgreSQL is unreachable outside CI.
const postgres = (await testDatabases()).find((f) => f.kind === "postgresql")!;
const UNREACHABLE = "postgres://postgres@127.0.0.1:1/x";
const PEPPER = "cli-test-pepper";

interface IssueOutput {
  key: string;
  apiKey: { id: string; prefix: string; tenantId: string; scopes: string[]; createdBy: string; metadata: Record<string, string>; expiresAt: string | null };
}

let dir: string;
let env: Record<string, string>;
let databaseUrl: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "keyward-cli-"));
  databaseUrl = `sqlite:${join(dir, "keyward.db")}`;
  env = { KEYWARD_DATABASE_URL: databaseUrl, KEYWARD_HASH_PEPPER: PEPPER };
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe("keyward CLI: help and usage", () => {
  it("prints help for every command, exit 0, with the exit codes in the main help", async () => {
    const main = await keyward(["--help"]);
    expect(main.code).toBe(0);
    for (const command of COMMANDS) expect(main.stdout).toContain(`  ${command.name} `);
    expect(main.stdout).toMatch(/Exit codes:\n\s+0\s+success\n\s+1\s+failure.*\n\s+2\s+usage or configuration error.*\n\s+3\s+not found/);

    const helps = await Promise.all(COMMANDS.map((command) => keyward([...command.name.split(" "), "--help"])));
    helps.forEach((result, i) => {
      const command = COMMANDS[i]!;
      expect(result.code, command.name).toBe(0);
      expect(result.stdout.startsWith(`Usage: ${command.usage}\n`), command.name).toBe(true);
      expect(result.stdout).toContain("--config FILE");
      for (const option of Object.keys(command.options)) expect(result.stdout, `${command.name} --${option}`).toContain(`--${option}`);
    });
    const [viaHelp, group, groupBare] = await Promise.all([keyward(["help", "settings", "set"]), keyward(["settings", "--help"]), keyward(["settings"])]);
    expect(viaHelp.stdout).toBe(helps[COMMANDS.findIndex((c) => c.name === "settings set")]!.stdout);
    expect(group.code).toBe(0);
    expect(group.stdout).toContain("settings delete");
    expect(groupBare.code).toBe(2);
    expect(groupBare.stderr).toContain("settings get");
  });

  it.each([
    [["bogus"], 'keyward: unknown command "bogus" (see keyward --help)'],
    [["--bogus"], "keyward: unknown option --bogus before the command"],
    [["issue"], "keyward issue: --tenant is required (see keyward issue --help)"],
    [["issue", "--tenant", "acme", "--bogus"], "keyward issue: Unknown option '--bogus'"],
    [["issue", "--tenant", "acme", "--rate-limit", "many"], 'keyward issue: --rate-limit: expected a whole number, got "many"'],
    [["issue", "--tenant", "acme", "--expires", "tomorrow"], "keyward issue: --expires: expected an RFC 3339 time"],
    [["issue", "--tenant", "acme", "--metadata", "novalue"], 'keyward issue: --metadata: expected KEY=VALUE, got "novalue"'],
    [["revoke"], "keyward revoke: missing arguments; usage: keyward revoke ID"],
    [["revoke", "a", "b"], 'keyward revoke: unexpected argument "b"'],
    [["settings", "set", "--tenant", "acme", "k", "v", "--type", "float"], 'keyward settings set: --type: expected string, int, bool, json, got "float"'],
    [["settings", "nope"], 'keyward: unknown command "settings nope"'],
    [["--config"], "keyward: --config needs a FILE"],
  ])("exits 2 on a usage error: keyward %j", async (args, message) => {
    const result = await keyward(args, env);
    expect(result.code).toBe(2);
    expect(result.stdout).toBe("");
    expect(result.stderr.startsWith(message)).toBe(true);
    expect(result.stderr.trim().split("\n")).toHaveLength(1);
  });

  it("exits 2 on a configuration error, naming the variable", async () => {
    const result = await keyward(["list", "--tenant", "acme"], { ...env, KEYWARD_CACHE_TTL_SECONDS: "soon" });
    expect(result.code).toBe(2);
    expect(result.stderr).toBe('keyward list: invalid configuration: KEYWARD_CACHE_TTL_SECONDS: expected a whole number, got "soon"\n');
  });
});

describe("keyward CLI against SQLite", () => {
  let admin: IssueOutput;

  it("bootstraps a first admin key into a new database and prints it once", async () => {
    admin = json<IssueOutput>(
      await keyward(["issue", "--tenant", "acme", "--scope", "keyward:admin", "--name", "root", "--metadata", "team=ops", "--metadata", "ticket=a=b", "--json"], env),
    );
    expect(admin.key).toMatch(/^kw_[0-9A-Za-z]{38}$/);
    expect(admin.apiKey).toMatchObject({ tenantId: "acme", scopes: ["keyward:admin"], createdBy: "cli", metadata: { team: "ops", ticket: "a=b" }, expiresAt: null });
    expect(admin.key.startsWith(admin.apiKey.prefix)).toBe(true);
    expect(JSON.stringify(admin.apiKey)).not.toContain(createKeyHasher(PEPPER)(admin.key));

    const plain = await keyward(["issue", "--tenant", "acme", "--prefix", "sk_test", "--expires", "2099-01-31T00:00:00+02:00", "--rate-limit", "10", "--window", "60"], env);
    expect(plain.code).toBe(0);
    expect(plain.stdout).toMatch(/^key: +sk_test_[0-9A-Za-z]{38}\nid: +key_\w+\nprefix: +sk_test_\w{4}\ntenant: +acme\nscopes: +\(none\)\n$/);
    expect(plain.stderr).toContain("shown this once");
  });

  it("lists keys without their secrets or hashes", async () => {
    const listed = json<{ keys: { id: string; createdBy: string }[]; truncated: boolean }>(await keyward(["list", "--tenant", "acme", "--json"], env));
    expect(listed.keys).toHaveLength(2);
    expect(listed.truncated).toBe(false);
    expect(listed.keys.map((k) => k.id)).toContain(admin.apiKey.id);
    const plain = await keyward(["list", "--tenant", "acme"], env);
    expect(plain.code).toBe(0);
    expect(plain.stdout.split("\n")[0]).toMatch(/^ID +PREFIX +STATUS +CREATED +SCOPES +NAME$/);
    expect(plain.stdout).toMatch(new RegExp(`${admin.apiKey.id} +${admin.apiKey.prefix} +active .*keyward:admin +root`));
    const limited = await keyward(["list", "--tenant", "acme", "--limit", "1", "--json"], env);
    expect(JSON.parse(limited.stdout)).toMatchObject({ truncated: true, keys: [{}] });
    for (const output of [JSON.stringify(listed), plain.stdout, limited.stdout]) {
      expect(output).not.toContain(admin.key);
      expect(output).not.toContain(admin.key.slice(8));
      expect(output).not.toContain(createKeyHasher(PEPPER)(admin.key));
    }
    const other = await keyward(["list", "--tenant", "nobody"], env);
    expect(other).toMatchObject({ code: 0, stdout: "" });
  });

  it("sets, gets, lists and deletes settings; unknown settings exit 3", async () => {
    const set = await keyward(["settings", "set", "--tenant", "acme", "max_upload_mb", "25", "--type", "int", "--public", "--description", "upload cap"], env);
    expect(set).toMatchObject({ code: 0, stdout: "set max_upload_mb (int, public) for tenant acme\n" });
    expect((await keyward(["settings", "set", "--tenant", "acme", "--type", "int", "--", "offset", "-5"], env)).code).toBe(0);
    expect(await keyward(["settings", "get", "--tenant", "acme", "max_upload_mb"], env)).toMatchObject({ code: 0, stdout: "25\n" });
    expect(json(await keyward(["settings", "get", "--tenant", "acme", "max_upload_mb", "--json"], env))).toMatchObject({
      key: "max_upload_mb", value: "25", valueType: "int", isPublic: true, description: "upload cap",
    });
    const listed = json<{ settings: { key: string; value: string }[] }>(await keyward(["settings", "list", "--tenant", "acme", "--json"], env));
    expect(listed.settings.map((s) => [s.key, s.value])).toEqual([["max_upload_mb", "25"], ["offset", "-5"]]);
    const plain = await keyward(["settings", "list", "--tenant", "acme"], env);
    expect(plain.stdout).toMatch(/^KEY +TYPE +VISIBILITY +VALUE\nmax_upload_mb +int +public +25\noffset +int +private +-5\n$/);

    const invalid = await keyward(["settings", "set", "--tenant", "acme", "flag", "maybe", "--type", "bool"], env);
    expect(invalid).toMatchObject({ code: 2, stderr: 'keyward settings set: value "maybe" is not "true" or "false"\n' });

    expect(await keyward(["settings", "delete", "--tenant", "acme", "offset"], env)).toMatchObject({ code: 0, stdout: "deleted offset for tenant acme\n" });
    expect(await keyward(["settings", "delete", "--tenant", "acme", "offset"], env)).toMatchObject({ code: 3, stderr: 'keyward settings delete: setting "offset" not found\n' });
    expect(await keyward(["settings", "get", "--tenant", "acme", "offset"], env)).toMatchObject({ code: 3, stderr: 'keyward settings get: setting "offset" not found\n' });
  });

  it("revokes by id (idempotently); an unknown id exits 3; an invalid tenant exits 2", async () => {
    const victim = json<IssueOutput>(await keyward(["issue", "--tenant", "acme", "--json"], env));
    const revoked = await keyward(["revoke", victim.apiKey.id, "--reason", "rotated"], env);
    expect(revoked.code).toBe(0);
    expect(revoked.stdout).toMatch(new RegExp(`^revoked ${victim.apiKey.id} \\(tenant acme\\) at \\d{4}-`));
    expect(json(await keyward(["revoke", victim.apiKey.id, "--json"], env))).toMatchObject({ id: victim.apiKey.id, revokedReason: "rotated" });
    expect(await keyward(["revoke", "key_doesnotexist"], env)).toMatchObject({ code: 3, stdout: "", stderr: 'keyward revoke: key "key_doesnotexist" not found\n' });
    const listed = json<{ keys: { id: string }[] }>(await keyward(["list", "--tenant", "acme", "--json"], env));
    expect(listed.keys.map((k) => k.id)).not.toContain(victim.apiKey.id);
    const all = json<{ keys: { id: string }[] }>(await keyward(["list", "--tenant", "acme", "--include-revoked", "--json"], env));
    expect(all.keys.map((k) => k.id)).toContain(victim.apiKey.id);

    const bad = await keyward(["issue", "--tenant", "not a tenant"], env);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^keyward issue: tenant_id may contain only/);
  });

  it("records actor cli in the audit trail", async () => {
    const db = await createDatabase({ url: databaseUrl });
    try {
      const events = await db.audit.list({ tenantId: "acme", limit: 100 });
      expect(new Set(events.map((e) => e.actor))).toEqual(new Set(["cli"]));
      expect(new Set(events.map((e) => e.action))).toEqual(new Set(["key.issue", "key.revoke", "setting.set", "setting.delete"]));
    } finally {
      await db.close();
    }
  });

  it("exits 1 with one line when the database is unreachable; a stack trace only at debug level", async () => {
    const result = await keyward(["list", "--tenant", "acme"], { KEYWARD_DATABASE_URL: UNREACHABLE });
    expect(result).toMatchObject({ code: 1, stdout: "", stderr: "keyward list: database unavailable (ECONNREFUSED)\n" });
    const debug = await keyward(["issue", "--tenant", "acme"], { KEYWARD_DATABASE_URL: UNREACHABLE, KEYWARD_LOG_LEVEL: "debug" });
    expect(debug.code).toBe(1);
    expect(debug.stderr).toMatch(/^keyward issue: database unavailable \(ECONNREFUSED\)\nKeywardError: database unavailable\n\s+at /);
    const migrate = await keyward(["migrate"], { KEYWARD_DATABASE_URL: UNREACHABLE });
    expect(migrate.code).toBe(1);
    expect(JSON.parse(migrate.stderr)).toMatchObject({ level: "error", msg: "migrations failed", error: "database unavailable" });
  });

  it("migrates a new database (keyward migrate), exit 0", async () => {
    const result = await keyward(["migrate"], { KEYWARD_DATABASE_URL: `sqlite:${join(dir, "migrated.db")}` });
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ level: "info", msg: "migrations applied", database: "sqlite" });
  });
});

describe("keyward config and config files", () => {
  const secrets = { token: "s3cret-admin-token-0123456789abcdef", pepper: "s3cret-pepper", password: "hunter2" };

  it("prints the effective configuration with secrets masked and where each value came from", async () => {
    const file = join(dir, "keyward.yaml");
    await writeFile(file, `hashPepper: ${secrets.pepper}\ncache:\n  ttlSeconds: 20\n  maxEntries: 10\nchangeFeed:\n  url: postgres://listen:${secrets.password}@db/keyward\n`);
    const result = await keyward(["config", "--config", file], {
      KEYWARD_ADMIN_TOKEN: secrets.token,
      KEYWARD_DATABASE_URL: `postgres://keyward:${secrets.password}@db:5432/keyward`,
      KEYWARD_CACHE_TTL_SECONDS: "30",
    });
    const printed = json<{ file: string; config: Record<string, unknown>; sources: Record<string, { key: string; from: string }> }>(result);
    for (const secret of Object.values(secrets)) expect(result.stdout).not.toContain(secret);
    expect(printed.file).toBe(file);
    expect(printed.config).toMatchObject({
      adminToken: "********",
      hashPepper: "********",
      databaseUrl: "postgres://keyward:********@db:5432/keyward",
      changeFeed: { url: "postgres://listen:********@db/keyward" },
      cache: { ttlSeconds: 30, maxEntries: 10 },
      tls: null,
    });
    expect(printed.sources).toMatchObject({
      KEYWARD_CACHE_TTL_SECONDS: { key: "cache.ttlSeconds", from: "env" },
      KEYWARD_CACHE_MAX_ENTRIES: { key: "cache.maxEntries", from: "file" },
      KEYWARD_HASH_PEPPER: { key: "hashPepper", from: "file" },
      KEYWARD_LISTEN: { key: "listen", from: "default" },
    });
  });

  it("takes --config before or after the command, or KEYWARD_CONFIG, for the database commands", async () => {
    const other = join(dir, "other.db");
    const file = join(dir, "other.json");
    await writeFile(file, JSON.stringify({ database: { url: `sqlite:${other}` }, hashPepper: PEPPER }));
    const issued = json<IssueOutput>(await keyward(["--config", file, "issue", "--tenant", "globex", "--json"], {}));
    const after = json<{ keys: { id: string }[] }>(await keyward(["list", "--tenant", "globex", "--json", `--config=${file}`], {}));
    const viaEnv = json<{ keys: { id: string }[] }>(await keyward(["list", "--tenant", "globex", "--json"], { KEYWARD_CONFIG: file }));
    expect(after.keys.map((k) => k.id)).toEqual([issued.apiKey.id]);
    expect(viaEnv).toEqual(after);
    // The main database never saw it.
    expect(json<{ keys: unknown[] }>(await keyward(["list", "--tenant", "globex", "--json"], env)).keys).toEqual([]);
  });

  it("exits 2 naming the file and key for a bad file value or an unknown key", async () => {
    const bad = join(dir, "bad.yaml");
    await writeFile(bad, "cache:\n  ttlSeconds: soon\n");
    expect(await keyward(["config", "--config", bad])).toMatchObject({
      code: 2,
      stderr: `keyward config: invalid configuration: ${bad}: cache.ttlSeconds (KEYWARD_CACHE_TTL_SECONDS): expected a whole number, got "soon"\n`,
    });
    await writeFile(bad, "cache:\n  ttl: 5\n");
    const unknown = await keyward(["list", "--tenant", "acme"], { KEYWARD_CONFIG: bad });
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain(`${bad}: unknown key "cache.ttl"`);
  });
});

describe("keys issued by the CLI on a running server", () => {
  it("SQLite: the server verifies CLI keys; CLI changes reach it within the cache TTL (no instance-lock conflict)", async () => {
    // One config file for both: the pepper must match for CLI keys to verify.
    const file = join(dir, "served.yaml");
    await writeFile(file, `database:\n  url: sqlite:${join(dir, "served.db")}\nhashPepper: ${PEPPER}\ncache:\n  ttlSeconds: 1\n`);
    const serverEnv = { KEYWARD_CONFIG: file };
    const root = json<IssueOutput>(await keyward(["issue", "--tenant", "acme", "--scope", "keyward:admin", "--json"], serverEnv));

    // The bin's default command (serve) with --config and no admin token: the CLI's key is the only credential.
    const server = await startMain({}, { script: CLI, args: ["--config", file] });
    try {
      const keys = connectClients("connect-json").client(KeyService, server.baseUrl);
      expect((await keys.verify({ key: root.key, requiredScopes: ["keyward:admin"] })).code).toBe(VerifyCode.VALID);
      const listed = await keys.listKeys({ tenantId: "acme" }, { headers: bearer(root.key) });
      expect(listed.apiKeys.map((k) => [k.id, k.createdBy])).toEqual([[root.apiKey.id, "cli"]]);

      // While the server holds the SQLite instance lock, the CLI still works beside it.
      const worker = json<IssueOutput>(await keyward(["issue", "--tenant", "acme", "--scope", "orders:read", "--json"], serverEnv));
      expect((await keys.verify({ key: worker.key, requiredScopes: ["orders:read"] })).code).toBe(VerifyCode.VALID);
      expect((await keyward(["revoke", worker.apiKey.id], serverEnv)).code).toBe(0);
      const deadline = Date.now() + 10_000;
      let code = VerifyCode.VALID;
      while (code !== VerifyCode.REVOKED && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 200));
        code = (await keys.verify({ key: worker.key })).code;
      }
      expect(code).toBe(VerifyCode.REVOKED);
    } finally {
      expect(await server.stop()).toBe(0);
    }
  });

  describe("PostgreSQL", () => {
    const factory = postgres;
    {
      it.skipIf(!factory.available)("a CLI revoke reaches a running server at once (LISTEN/NOTIFY), far within the cache TTL", async () => {
        const database = await factory.create();
        const serverEnv = { KEYWARD_DATABASE_URL: database.url, KEYWARD_CACHE_TTL_SECONDS: "3600", KEYWARD_LOG_LEVEL: "warn" };
        const server = await startMain({ ...serverEnv, KEYWARD_LOG_LEVEL: "info" });
        try {
          const keys = connectClients("connect-json").client(KeyService, server.baseUrl);
          const issued = json<IssueOutput>(await keyward(["issue", "--tenant", "acme", "--json"], serverEnv));
          expect((await keys.verify({ key: issued.key })).code).toBe(VerifyCode.VALID);
          expect((await keyward(["revoke", issued.apiKey.id], serverEnv)).code).toBe(0);
          const started = Date.now();
          let code = VerifyCode.VALID;
          while (code !== VerifyCode.REVOKED && Date.now() - started < 5_000) {
            await new Promise((r) => setTimeout(r, 50));
            code = (await keys.verify({ key: issued.key })).code;
          }
          expect(code).toBe(VerifyCode.REVOKED);
        } finally {
          expect(await server.stop()).toBe(0);
          await database.drop();
        }
      });

      it.skipIf(!factory.available)("keyward serve runs the node:cluster path (KEYWARD_WORKERS=2) and drains on SIGTERM", async () => {
        const database = await factory.create();
        try {
          const server = await startMain({ KEYWARD_DATABASE_URL: database.url, KEYWARD_WORKERS: "2" }, { script: CLI, args: ["serve"] });
          const deadline = Date.now() + 20_000;
          while (!server.output().includes('"msg":"keyward workers listening"') && Date.now() < deadline) {
            await new Promise((r) => setTimeout(r, 100));
          }
          expect(server.output()).toContain('"msg":"keyward workers listening"');
          const keys = connectClients("connect-json").client(KeyService, server.baseUrl);
          expect((await keys.verify({ key: "kw_nope" })).code).toBe(VerifyCode.NOT_FOUND);
          expect(await server.stop()).toBe(0);
        } finally {
          await database.drop();
        }
      });
    }
  });
});
