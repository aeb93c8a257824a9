// SQLite mode is single-instance: a second keyward process on the same SQLite
// file refuses to start with a clear message, and a crashed first process
// leaves no stale lock behind (the kernel drops it with the process).
import { mkdir, mkdtemp, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KeyService, VerifyCode } from "../../src/gen/keyward/v1/keys_pb.js";
import { createDatabase } from "../../src/storage/database.js";
import { InstanceLockError } from "../../src/storage/sqlite-instance-lock.js";
import { connectClients } from "../helpers/clients.js";
import { ADMIN_TOKEN } from "../helpers/core.js";
import { runMain, startMain } from "../helpers/process.js";
import { adminHeaders } from "../helpers/server.js";

const REFUSAL = /another keyward process is already serving the SQLite database .*keyward\.db.*use PostgreSQL/;

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (error) {
    return error;
  }
  throw new Error("expected a rejection");
}

describe("one keyward process per SQLite file", () => {
  let dir: string;
  let env: Record<string, string>;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "keyward-single-"));
    env = { KEYWARD_DATABASE_URL: `sqlite:${join(dir, "keyward.db")}`, KEYWARD_ADMIN_TOKEN: ADMIN_TOKEN };
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it("a second process on the same file exits with a clear message; the first keeps serving", async () => {
    const first = await startMain(env);
    const refused: ReturnType<typeof runMain>[] = [];
    try {
      const keys = connectClients("connect-json").client(KeyService, first.baseUrl);
      const issued = await keys.issue({ tenantId: "acme" }, { headers: adminHeaders });

      const second = runMain(env);
      refused.push(second);
      expect(await Promise.race([second.exited, new Promise((r) => setTimeout(() => r("still running"), 10_000))])).toBe(1);
      expect(second.output()).toMatch(REFUSAL);
      expect(second.output()).not.toContain("keyward listening");

      // The same file named through a symlinked directory is the same database.
      await symlink(dir, join(dir, "..", `${dir.split("/").at(-1)}-link`));
      const third = runMain({ ...env, KEYWARD_DATABASE_URL: `sqlite:${dir}-link/keyward.db` });
      refused.push(third);
      expect(await third.exited).toBe(1);
      expect(third.output()).toMatch(REFUSAL);

      expect((await keys.verify({ key: issued.key })).code).toBe(VerifyCode.VALID);
    } finally {
      // Should a refusal regress, do not leave the intruders running.
      for (const r of refused) if (r.child.exitCode === null) r.child.kill("SIGKILL");
      expect(await first.stop()).toBe(0);
      await rm(`${dir}-link`, { force: true });
    }
    // A clean stop releases it for the next process.
    const next = await startMain(env);
    // One round trip first: "keyward listening" is logged just before the SIGTERM handler is installed.
    const keys = connectClients("connect-json").client(KeyService, next.baseUrl);
    expect((await keys.issue({ tenantId: "acme" }, { headers: adminHeaders })).key).toMatch(/^kw_/);
    expect(await next.stop()).toBe(0);
  });

  it("a killed process leaves no stale lock: the next one starts", async () => {
    const crashed = await startMain(env);
    expect(await crashed.stop("SIGKILL")).toBe(null);
    const next = await startMain(env);
    try {
      const keys = connectClients("connect-json").client(KeyService, next.baseUrl);
      expect((await keys.issue({ tenantId: "acme" }, { headers: adminHeaders })).key).toMatch(/^kw_/);
    } finally {
      expect(await next.stop()).toBe(0);
    }
  });

  it("in one process too: a second locked handle fails, other files and sqlite::memory: do not", async () => {
    const url = `sqlite:${join(dir, "inproc", "keyward.db")}`;
    await mkdir(join(dir, "inproc"));
    const held = await createDatabase({ url, instanceLock: true });
    try {
      const error = await rejection(createDatabase({ url, instanceLock: true }));
      expect(error).toBeInstanceOf(InstanceLockError);
      expect((error as Error).message).toMatch(REFUSAL);
      // Tools that open a second, unlocked handle (tests, sqlite3) still can.
      const reader = await createDatabase({ url });
      await reader.migrate();
      await reader.close();
      const other = await createDatabase({ url: `sqlite:${join(dir, "inproc", "other.db")}`, instanceLock: true });
      await other.close();
      const [m1, m2] = [
        await createDatabase({ url: "sqlite::memory:", instanceLock: true }),
        await createDatabase({ url: "sqlite::memory:", instanceLock: true }),
      ];
      await Promise.all([m1.close(), m2.close()]);
    } finally {
      await held.close();
    }
    // Released on close.
    const again = await createDatabase({ url, instanceLock: true });
    await again.close();
  });
});
