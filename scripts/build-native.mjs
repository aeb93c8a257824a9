// Compiles native/malloc-trim.c into build/malloc-trim.node (part of `npm run
// build`). Only where it helps: Linux with glibc and a C compiler. Elsewhere
// keyward runs without it (src/memory-trim.ts), so a missing compiler is a
// notice, not a failed build; KEYWARD_REQUIRE_NATIVE=1 (CI) makes it one.
import { execFileSync } from "node:child_process";
import { mkdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const out = join(root, "build", "malloc-trim.node");
const required = process.env.KEYWARD_REQUIRE_NATIVE === "1";

function skip(why) {
  rmSync(out, { force: true });
  const line = `build-native: ${why}; keyward runs without malloc_trim (see src/memory-trim.ts)`;
  if (required) {
    console.error(line);
    process.exit(1);
  }
  console.log(line);
}

const glibc = process.platform === "linux" && process.report.getReport().header.glibcVersionRuntime;
if (!glibc) {
  skip("not Linux with glibc");
} else {
  const cc = process.env.CC || "cc";
  mkdirSync(dirname(out), { recursive: true });
  try {
    execFileSync(cc, ["-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-o", out, join(root, "native", "malloc-trim.c")], { stdio: "inherit" });
  } catch (error) {
    skip(`${cc} failed (${error.message.split("\n")[0]})`);
  }
}
