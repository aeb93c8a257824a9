// `npm run bench:tick-shape`: what a memory-reducing GC at idle does to
// process.nextTick, with and without src/retain-shapes.ts. Runs a child node
// per mode; each times nextTick in batches, idles, runs V8's memory-reducing
// GC (what V8's memory reducer and keyward's idle GC run), then times it again.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const dist = fileURLToPath(new URL("../../../dist/retain-shapes.js", import.meta.url));
const probe = `
  import v8 from "node:v8"; import vm from "node:vm";
  v8.setFlagsFromString("--expose-gc"); const gc = vm.runInNewContext("gc"); v8.setFlagsFromString("--no-expose-gc");
  if (process.argv[2] === "retained") (await import(${JSON.stringify(dist)})).retainTickShape();
  const noop = () => {};
  async function time() {
    const n = 200_000;
    let best = Infinity;
    for (let round = 0; round < 3; round++) {
      const start = process.hrtime.bigint();
      for (let i = 0; i < n; i++) {
        process.nextTick(noop);
        if ((i & 1023) === 0) await new Promise((r) => setImmediate(r));
      }
      await new Promise((r) => setImmediate(r));
      best = Math.min(best, Number(process.hrtime.bigint() - start) / n);
    }
    return best;
  }
  const before = await time();
  await new Promise((r) => setTimeout(r, 500));
  gc({ type: "major", flavor: "last-resort" });
  const after = await time();
  process.stdout.write(JSON.stringify({ before, after }));
`;

const dir = mkdtempSync(join(tmpdir(), "keyward-tick-shape-"));
try {
  const file = join(dir, "probe.mjs");
  writeFileSync(file, probe);
  console.log("| tick objects | ns per nextTick before the GC | after |\n| --- | ---: | ---: |");
  for (const mode of ["none retained", "retained"]) {
    const { before, after } = JSON.parse(execFileSync(process.execPath, [file, mode === "retained" ? "retained" : ""], { encoding: "utf8" })) as { before: number; after: number };
    console.log(`| ${mode} | ${before.toFixed(0)} | ${after.toFixed(0)} |`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
