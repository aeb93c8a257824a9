// The real entry point as a child process: configuration errors, SIGTERM
// drain with the usage flush, and no key material in its output.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { KeyService, VerifyCode } from "../../src/gen/keyward/v1/keys_pb.js";
import { connectClients } from "../helpers/clients.js";
import { ADMIN_TOKEN } from "../helpers/core.js";
import { runMain, startMain } from "../helpers/process.js";
import { adminHeaders } from "../helpers/server.js";

describe("keyward process", () => {
  let dir: string | undefined;
  afterAll(() => (dir ? rm(dir, { recursive: true, force: true }) : undefined));

  it("refuses to start on bad configuration, naming the variable", async () => {
    const { exited, output } = runMain({ KEYWARD_CACHE_TTL_SECONDS: "soon" });
    expect(await exited).toBe(2);
    expect(output()).toMatch(/invalid configuration: KEYWARD_CACHE_TTL_SECONDS: expected a whole number/);
  });

  it("drains on SIGTERM, flushes usage, exits 0, and never prints a key", async () => {
    dir = await mkdtemp(join(tmpdir(), "keyward-process-"));
    const env = {
      KEYWARD_DATABASE_URL: `sqlite:${join(dir, "keyward.db")}`,
      KEYWARD_ADMIN_TOKEN: ADMIN_TOKEN,
      // Long enough that only the shutdown flush can write the counts.
      KEYWARD_USAGE_FLUSH_SECONDS: "3600",
      KEYWARD_LOG_LEVEL: "debug",
    };
    const first = await startMain(env);
    const keys = connectClients("connect-json").client(KeyService, first.baseUrl);
    const issued = await keys.issue({ tenantId: "acme", name: "p" }, { headers: adminHeaders });
    const n = 12;
    for (let i = 0; i < n; i++) expect((await keys.verify({ key: issued.key })).code).toBe(VerifyCode.VALID);
    await keys.verify({ key: issued.key.slice(0, -2) + "zz" });
    expect(await first.stop("SIGTERM")).toBe(0);
    expect(first.output()).toContain('"msg":"stopped"');

    const second = await startMain(env);
    try {
      const keys2 = connectClients("connect-json").client(KeyService, second.baseUrl);
      const got = await keys2.getKey({ id: issued.apiKey!.id }, { headers: adminHeaders });
      expect(got.apiKey?.requestCount).toBe(BigInt(n));
    } finally {
      expect(await second.stop("SIGINT")).toBe(0);
    }
    const everything = first.output() + second.output();
    expect(everything).not.toContain(issued.key);
    expect(everything).not.toContain(issued.key.slice(3, 20));
    expect(everything).not.toContain(ADMIN_TOKEN);
  });
});
