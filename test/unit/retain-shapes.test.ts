import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { retainTickShape } from "../../src/retain-shapes.js";

const dist = fileURLToPath(new URL("../../dist/retain-shapes.js", import.meta.url));

describe("retainTickShape", () => {
  it("holds one of Node's tick objects, once per process", () => {
    const held = retainTickShape();
    expect(held).toBeDefined();
    // A TickObject: callback, args and three symbol-keyed fields (async ids, context frame).
    expect(Object.keys(held!)).toEqual(["callback", "args"]);
    expect(Object.getOwnPropertySymbols(held!).length).toBeGreaterThanOrEqual(2);
    expect(retainTickShape()).toBe(held);
  });

  it("tick objects made after a memory-reducing GC share the held one's map", () => {
    // What the fix relies on: the held object keeps the map that later nextTick calls use
    // (V8's %HaveSameMap, in a child process with natives syntax).
    const dir = mkdtempSync(join(tmpdir(), "keyward-shapes-"));
    try {
      const script = join(dir, "probe.mjs");
      writeFileSync(
        script,
        `import { createHook } from "node:async_hooks";
         const { retainTickShape } = await import(${JSON.stringify(dist)});
         const held = retainTickShape();
         const capture = () => {
           let tick;
           const hook = createHook({ init(_id, type, _trigger, resource) { if (type === "TickObject") tick ??= resource; } }).enable();
           process.nextTick(() => {});
           hook.disable();
           return tick;
         };
         await new Promise((r) => setImmediate(r));
         gc({ type: "major", flavor: "last-resort" });
         await new Promise((r) => setImmediate(r));
         const after = capture();
         process.stdout.write(JSON.stringify({ same: %HaveSameMap(held, after) }));`,
      );
      const out = execFileSync(process.execPath, ["--allow-natives-syntax", "--expose-gc", script], { encoding: "utf8" });
      expect(JSON.parse(out)).toEqual({ same: true });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
