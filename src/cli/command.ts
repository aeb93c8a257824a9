// The shape every CLI command has: its help and options (cheap to load, for
// --help) and a run function that imports the heavy parts only when called.
import type { ParseArgsOptionsConfig } from "node:util";
import type { EffectiveConfig } from "../config-file.js";
import { UsageError } from "./args.js";
import type { Print } from "./output.js";

export type OptionValues = Record<string, string | boolean | (string | boolean)[] | undefined>;

export interface CommandInput {
  values: OptionValues;
  positionals: string[];
  /** --config, when given. */
  configFile: string | undefined;
  /** The effective configuration (environment > file > defaults); throws ConfigError. Memoized. */
  config(): EffectiveConfig;
  out: Print;
  err: Print;
}

export interface CommandSpec {
  /** "issue", or "settings get" for a subcommand. */
  name: string;
  summary: string;
  /** The usage line(s) after "Usage: ". */
  usage: string;
  /** Paragraphs and the option list, printed by --help. */
  help: string;
  options: ParseArgsOptionsConfig;
  /** Allowed positional arguments: [min, max]. */
  positionals: [number, number];
  /** Resolves with the exit code; undefined when the process keeps running (serve). */
  run(input: CommandInput): Promise<number | undefined>;
}

export function stringOption(values: OptionValues, name: string): string | undefined {
  const value = values[name];
  return typeof value === "string" ? value : undefined;
}

export function requiredOption(values: OptionValues, name: string): string {
  const value = stringOption(values, name);
  if (value === undefined || value === "") throw new UsageError(`--${name} is required`);
  return value;
}

export function listOption(values: OptionValues, name: string): string[] {
  const value = values[name];
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === "string") : [];
}

export const flagOption = (values: OptionValues, name: string): boolean => values[name] === true;
