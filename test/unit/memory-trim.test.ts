import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { describe, expect, it } from "vitest";
import { loadMallocTrim, startMemoryTrimmer } from "../../src/memory-trim.js";

const report = process.report.getReport() as { header: { glibcVersionRuntime?: string } };
const glibc = process.platform === "linux" && report.header.glibcVersionRuntime !== undefined;
const addon = fileURLToPath(new URL("../../build/malloc-trim.node", import.meta.url));

const until = async (done: () => boolean, timeoutMs = 5_000) => {
  const end = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > end) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 5));
  }
};

describe.runIf(glibc)("malloc_trim (Linux, glibc)", () => {
  it("is built by npm run build and loads", () => {
    expect(loadMallocTrim()).toBeTypeOf("function");
  });

  it("returns C heap memory that free() alone leaves resident", () => {
    // 100 MB of 1 KB buffers (malloc'd, below the mmap threshold); every 50th
    // stays alive, so the freed space is holes glibc cannot shrink its heap past.
    const script = `
      const rss = () => Number(/RssAnon:\\s+(\\d+)/.exec(require("fs").readFileSync("/proc/self/status", "utf8"))[1]) * 1024;
      const { trim } = require(process.env.ADDON);
      const keep = [];
      let drop = [];
      for (let i = 0; i < 100000; i++) (i % 50 === 0 ? keep : drop).push(Buffer.allocUnsafeSlow(1000));
      drop = null;
      gc(); gc();
      setTimeout(() => {
        const afterFree = rss();
        const released = trim();
        console.log(JSON.stringify({ afterFree, afterTrim: rss(), released, kept: keep.length }));
      }, 200);`;
    const out = JSON.parse(execFileSync(process.execPath, ["--expose-gc", "-e", script], { env: { ...process.env, ADDON: addon } }).toString()) as {
      afterFree: number;
      afterTrim: number;
      released: boolean;
    };
    expect(out.released).toBe(true);
    expect(out.afterFree - out.afterTrim).toBeGreaterThan(50 * 2 ** 20);
  });

  it("trims after a major GC, then no more often than the interval", async () => {
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    const trim = loadMallocTrim()!;
    const at: number[] = [];
    const trimmer = startMemoryTrimmer({ trim, delayMs: 10, minIntervalMs: 300, onTrim: () => at.push(performance.now()) });
    try {
      gc();
      await until(() => at.length === 1);
      // Two more full GCs inside the interval: one trim, deferred to its end.
      gc();
      gc();
      await until(() => at.length === 2);
      expect(at[1]! - at[0]!).toBeGreaterThanOrEqual(295);
      await new Promise((r) => setTimeout(r, 400));
      expect(at).toHaveLength(2);
      expect(trimmer.stats().trims).toBe(2);
    } finally {
      trimmer.stop();
    }
  });
});
