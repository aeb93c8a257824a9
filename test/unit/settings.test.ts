import { describe, expect, it } from "vitest";
import { KeywardError } from "../../src/core/errors.js";
import type { SetSettingInput } from "../../src/core/settings.js";
import { checkSettingValue } from "../../src/core/settings.js";
import { ADMIN, createCore, issueInput } from "../helpers/core.js";

const input = (o: Partial<SetSettingInput> = {}): SetSettingInput => ({
  tenantId: "acme",
  key: "feature.x",
  value: "on",
  valueType: "string",
  description: "",
  descriptionAr: "",
  isPublic: false,
  ...o,
});

const outcome = async (p: Promise<unknown>) => {
  try {
    await p;
    return "ok";
  } catch (e) {
    return e instanceof KeywardError ? `${e.kind}: ${e.message}` : `other: ${String(e)}`;
  }
};

describe("setting values", () => {
  it("parse as their type", () => {
    const ok: [Parameters<typeof checkSettingValue>[0], string][] = [
      ["int", "0"],
      ["int", "-9223372036854775808"],
      ["int", "9223372036854775807"],
      ["bool", "true"],
      ["bool", "false"],
      ["json", '{"a":[1,2]}'],
      ["json", "null"],
      ["string", ""],
    ];
    for (const [type, value] of ok) expect(() => checkSettingValue(type, value)).not.toThrow();
    const bad: [Parameters<typeof checkSettingValue>[0], string][] = [
      ["int", "9223372036854775808"],
      ["int", "1.5"],
      ["int", "01"],
      ["int", " 1"],
      ["int", ""],
      ["bool", "True"],
      ["bool", "1"],
      ["json", "{a:1}"],
      ["json", ""],
    ];
    for (const [type, value] of bad) expect(() => checkSettingValue(type, value), `${type} ${value}`).toThrow(KeywardError);
  });
});

describe("settings manager", () => {
  it("upserts, reads, lists by key and deletes", async () => {
    const core = createCore();
    await core.settings.set(ADMIN, input({ key: "b", value: "1", valueType: "int", descriptionAr: "الوصف" }));
    await core.settings.set(ADMIN, input({ key: "a", value: "true", valueType: "bool", isPublic: true }));
    const replaced = await core.settings.set(ADMIN, input({ key: "b", value: "2", valueType: "int" }));
    expect(replaced.value).toBe("2");
    expect((await core.settings.get(ADMIN, "acme", "a")).valueType).toBe("bool");
    const page1 = await core.settings.list(ADMIN, { tenantId: "acme", pageSize: 1, pageToken: "" });
    expect(page1.records.map((r) => r.key)).toEqual(["a"]);
    const page2 = await core.settings.list(ADMIN, { tenantId: "acme", pageSize: 1, pageToken: page1.nextPageToken });
    expect(page2.records.map((r) => r.key)).toEqual(["b"]);
    expect(page2.nextPageToken).toBe("");
    await core.settings.delete(ADMIN, "acme", "a");
    expect(await outcome(core.settings.get(ADMIN, "acme", "a"))).toBe('not_found: setting "a" not found');
    expect(await outcome(core.settings.delete(ADMIN, "acme", "a"))).toMatch(/^not_found/);
  });

  it("rejects values that do not parse, unknown types and bad keys", async () => {
    const core = createCore();
    expect(await outcome(core.settings.set(ADMIN, input({ value: "abc", valueType: "int" })))).toMatch(/^invalid_argument: value "abc" is not an integer/);
    expect(await outcome(core.settings.set(ADMIN, input({ valueType: undefined })))).toMatch(/^invalid_argument: value_type is required/);
    expect(await outcome(core.settings.set(ADMIN, input({ key: "" })))).toBe("invalid_argument: key is required");
    expect(await outcome(core.settings.set(ADMIN, input({ key: "a b" })))).toMatch(/^invalid_argument: key may contain/);
    expect(await outcome(core.settings.set(ADMIN, input({ value: "x".repeat(70_000) })))).toMatch(/^invalid_argument: value must be at most/);
  });

  it("shows non-admin keys only their tenant's public settings", async () => {
    const core = createCore();
    await core.settings.set(ADMIN, input({ key: "public", isPublic: true }));
    await core.settings.set(ADMIN, input({ key: "private" }));
    await core.settings.set(ADMIN, input({ tenantId: "globex", key: "public", isPublic: true }));
    const { key } = await core.keys.issue(ADMIN, issueInput({ scopes: ["read"] }));
    const reader = await core.auth.authenticate(`Bearer ${key}`);
    expect((await core.settings.get(reader, "", "public")).tenantId).toBe("acme");
    expect(await outcome(core.settings.get(reader, "acme", "private"))).toBe('not_found: setting "private" not found');
    expect(await outcome(core.settings.get(reader, "globex", "public"))).toMatch(/^not_found: tenant/);
    const listed = await core.settings.list(reader, { tenantId: "", pageSize: 0, pageToken: "" });
    expect(listed.records.map((r) => r.key)).toEqual(["public"]);
    expect(await outcome(core.settings.set(reader, input()))).toMatch(/^permission_denied/);
    expect(await outcome(core.settings.delete(reader, "acme", "public"))).toMatch(/^permission_denied/);

    const { key: adminKey } = await core.keys.issue(ADMIN, issueInput({ scopes: ["keyward:admin"] }));
    const tenantAdmin = await core.auth.authenticate(`Bearer ${adminKey}`);
    expect((await core.settings.list(tenantAdmin, { tenantId: "", pageSize: 0, pageToken: "" })).records).toHaveLength(2);
    expect(await outcome(core.settings.get(tenantAdmin, "globex", "public"))).toMatch(/^not_found/);
    expect(await outcome(core.settings.set(tenantAdmin, input({ tenantId: "globex" })))).toMatch(/^not_found/);
  });
});
