// The server re-executes itself with its V8 flags (src/v8-flags.ts): the same
// process keeps running, with the flags, whichever entry point started it.
import { readFileSync } from "node:fs";
import { afterEach, describe, expect, it } from "vitest";
import { DEFAULT_V8_FLAGS } from "../../src/v8-flags.js";
import { CLI, startMain, type ServerProcess } from "../helpers/process.js";

const commandLine = (pid: number) => readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean);
const onLinux = process.platform === "linux";

describe.skipIf(!onLinux)("V8 flags of the server process (Linux /proc)", () => {
  let server: ServerProcess | undefined;
  afterEach(async () => {
    await server?.stop();
    server = undefined;
  });

  it("dist/main.js runs with keyward's flags in the process that was started, and drains on SIGTERM", async () => {
    server = await startMain({ KEYWARD_DATABASE_URL: "sqlite::memory:" });
    const argv = commandLine(server.child.pid!);
    expect(argv.slice(1, 1 + DEFAULT_V8_FLAGS.length)).toEqual(DEFAULT_V8_FLAGS);
    expect(argv.at(-1)).toMatch(/dist\/main\.js$/);
    expect((await fetch(`${server.baseUrl}/healthz`)).status).toBe(200);
    expect(await server.stop()).toBe(0);
    server = undefined;
  });

  it("keyward serve does the same; KEYWARD_V8_FLAGS and node's own flags replace them", async () => {
    server = await startMain({ KEYWARD_DATABASE_URL: "sqlite::memory:" }, { script: CLI, args: ["serve"] });
    expect(commandLine(server.child.pid!)).toEqual(expect.arrayContaining([...DEFAULT_V8_FLAGS, "serve"]));
    await server.stop();
    server = await startMain({ KEYWARD_DATABASE_URL: "sqlite::memory:", KEYWARD_V8_FLAGS: "--max-semi-space-size=4" });
    expect(commandLine(server.child.pid!)).toContain("--max-semi-space-size=4");
    expect(commandLine(server.child.pid!)).not.toContain("--max-semi-space-size=8");
    await server.stop();
    server = await startMain({ KEYWARD_DATABASE_URL: "sqlite::memory:", KEYWARD_V8_FLAGS: "" });
    expect(commandLine(server.child.pid!).filter((a) => a.startsWith("--"))).toEqual([]);
  });

  it("exits 2 naming KEYWARD_V8_FLAGS when it is not a list of flags", async () => {
    await expect(startMain({ KEYWARD_DATABASE_URL: "sqlite::memory:", KEYWARD_V8_FLAGS: "semi=8" })).rejects.toThrow(
      /exited with 2[\s\S]*KEYWARD_V8_FLAGS: "semi=8" is not a --flag/,
    );
  });
});
