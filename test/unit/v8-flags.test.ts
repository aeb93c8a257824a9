import { describe, expect, it } from "vitest";
import { DEFAULT_V8_FLAGS, v8FlagsToAdd } from "../../src/v8-flags.js";

describe("V8 flags", () => {
  it("adds keyward's defaults once: a process that has them adds nothing", () => {
    expect(v8FlagsToAdd({}, [])).toEqual(DEFAULT_V8_FLAGS);
    expect(v8FlagsToAdd({}, [...DEFAULT_V8_FLAGS, "--inspect=127.0.0.1:0"])).toEqual([]);
  });

  it("takes KEYWARD_V8_FLAGS instead; empty means V8's own defaults", () => {
    expect(v8FlagsToAdd({ KEYWARD_V8_FLAGS: "" }, [])).toEqual([]);
    expect(v8FlagsToAdd({ KEYWARD_V8_FLAGS: " --max-semi-space-size=4  --max-old-space-size=512 " }, [])).toEqual([
      "--max-semi-space-size=4",
      "--max-old-space-size=512",
    ]);
    expect(() => v8FlagsToAdd({ KEYWARD_V8_FLAGS: "--ok max-old-space-size=1" }, [])).toThrow(/not a --flag/);
  });

  it("never overrides a flag given to node on its command line or in NODE_OPTIONS (either spelling)", () => {
    const others = (name: string) => DEFAULT_V8_FLAGS.filter((flag) => !flag.startsWith(`${name}=`));
    expect(v8FlagsToAdd({}, ["--max-semi-space-size=32"])).toEqual(others("--max-semi-space-size"));
    expect(v8FlagsToAdd({ NODE_OPTIONS: "--max_semi_space_size=2" }, [])).toEqual(others("--max-semi-space-size"));
    expect(v8FlagsToAdd({ NODE_OPTIONS: "--heap_growing_percent=10 --allocation-site-pretenuring" }, ["--max-semi-space-size=32"])).toEqual([]);
    // A boolean flag counts as given in either sense: --x overrides keyward's --no-x.
    expect(v8FlagsToAdd({}, ["--allocation_site_pretenuring"])).not.toContain("--no-allocation-site-pretenuring");
    expect(v8FlagsToAdd({}, ["--no-allocation-site-pretenuring"])).toEqual(DEFAULT_V8_FLAGS.filter((f) => f !== "--no-allocation-site-pretenuring"));
    expect(v8FlagsToAdd({ KEYWARD_V8_FLAGS: "--max-semi-space-size=8 --stack-size=2000" }, ["--stack-size=900"])).toEqual([
      "--max-semi-space-size=8",
    ]);
  });
});
