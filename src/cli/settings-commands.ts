// keyward settings get|set|list|delete: the core's settings manager over the database.
import type { SettingType } from "../core/model.js";
import { LIMITS } from "../core/validation.js";
import { EXIT, UsageError } from "./args.js";
import { withAdminContext } from "./admin-context.js";
import { flagOption, requiredOption, stringOption, type CommandInput } from "./command.js";
import { clip, settingJson, table } from "./output.js";

const TYPES: readonly SettingType[] = ["string", "int", "bool", "json"];

export async function runSettingsGet(input: CommandInput): Promise<number> {
  const tenantId = requiredOption(input.values, "tenant");
  const key = input.positionals[0]!;
  const { config } = input.config();
  const record = await withAdminContext(config, (admin) => admin.settings.get(admin.principal, tenantId, key));
  // Plain output is the bare value, so `$(keyward settings get ...)` works in scripts.
  input.out(flagOption(input.values, "json") ? JSON.stringify(settingJson(record)) : record.value);
  return EXIT.ok;
}

export async function runSettingsSet(input: CommandInput): Promise<number> {
  const { values } = input;
  const tenantId = requiredOption(values, "tenant");
  const type = requiredOption(values, "type");
  if (!TYPES.includes(type as SettingType)) throw new UsageError(`--type: expected ${TYPES.join(", ")}, got "${type}"`);
  const [key, value] = input.positionals as [string, string];
  const { config } = input.config();
  const record = await withAdminContext(config, (admin) =>
    admin.settings.set(admin.principal, {
      tenantId,
      key,
      value,
      valueType: type as SettingType,
      isPublic: flagOption(values, "public"),
      description: stringOption(values, "description") ?? "",
      descriptionAr: stringOption(values, "description-ar") ?? "",
    }),
  );
  if (flagOption(values, "json")) input.out(JSON.stringify(settingJson(record)));
  else input.out(`set ${record.key} (${record.valueType}${record.isPublic ? ", public" : ""}) for tenant ${record.tenantId}`);
  return EXIT.ok;
}

export async function runSettingsList(input: CommandInput): Promise<number> {
  const tenantId = requiredOption(input.values, "tenant");
  const { config } = input.config();
  const records = await withAdminContext(config, async (admin) => {
    const all = [];
    let pageToken = "";
    do {
      const page = await admin.settings.list(admin.principal, { tenantId, pageSize: LIMITS.pageSizeMax, pageToken });
      all.push(...page.records);
      pageToken = page.nextPageToken;
    } while (pageToken !== "");
    return all;
  });
  if (flagOption(input.values, "json")) {
    input.out(JSON.stringify({ settings: records.map(settingJson) }));
    return EXIT.ok;
  }
  if (records.length === 0) {
    input.err(`keyward: no settings for tenant ${tenantId}`);
    return EXIT.ok;
  }
  const rows = records.map((r) => [r.key, r.valueType, r.isPublic ? "public" : "private", clip(r.value, 60)]);
  for (const line of table(["KEY", "TYPE", "VISIBILITY", "VALUE"], rows)) input.out(line);
  return EXIT.ok;
}

export async function runSettingsDelete(input: CommandInput): Promise<number> {
  const tenantId = requiredOption(input.values, "tenant");
  const key = input.positionals[0]!;
  const { config } = input.config();
  await withAdminContext(config, (admin) => admin.settings.delete(admin.principal, tenantId, key));
  input.out(`deleted ${key} for tenant ${tenantId}`);
  return EXIT.ok;
}
