// keyward config: the effective configuration as JSON, secrets masked, with
// where each variable's value came from.
import { CONFIG_FILE_KEYS } from "../config-file.js";
import { redactedConfig } from "../config.js";
import { EXIT } from "./args.js";
import type { CommandInput } from "./command.js";

export async function runConfig(input: CommandInput): Promise<number> {
  const { config, file, sources } = input.config();
  const from = Object.fromEntries(
    Object.entries(CONFIG_FILE_KEYS).map(([key, variable]) => [variable, { key, from: sources[variable] }]),
  );
  // Unset values print as null, so every setting shows up.
  const printed = { file: file ?? null, config: redactedConfig(config), sources: from };
  input.out(JSON.stringify(printed, (_key, value: unknown) => (value === undefined ? null : value), 2));
  return EXIT.ok;
}
