// Dispatch for `keyward [--config FILE] [COMMAND] [options]`: global options,
// the command's own options (node:util parseArgs), and one exit code and one
// stderr line per outcome.
import { parseArgs } from "node:util";
import { loadEffectiveConfig, type EffectiveConfig } from "../config-file.js";
import { ConfigError } from "../config.js";
import { KeywardError } from "../core/errors.js";
import { EXIT, UsageError, wantsHelp } from "./args.js";
import type { CommandInput, CommandSpec, OptionValues } from "./command.js";
import { commandHelp, findCommand, mainHelp, settingsHelp } from "./commands.js";
import type { Print } from "./output.js";

export interface CliIo {
  out: Print;
  err: Print;
  env: Record<string, string | undefined>;
}

const defaultIo = (): CliIo => ({
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
  env: process.env,
});

/** Runs one command line; resolves with the exit code, or undefined while serving. */
export async function runCli(argv: readonly string[], io: CliIo = defaultIo()): Promise<number | undefined> {
  let label = "keyward";
  let loaded: EffectiveConfig | undefined;
  try {
    // Global options come before the command; the command's parser also accepts --config.
    let configFile: string | undefined;
    let i = 0;
    for (; i < argv.length; i++) {
      const arg = argv[i]!;
      if (arg === "-h" || arg === "--help") {
        io.out(mainHelp());
        return EXIT.ok;
      }
      if (arg === "--config") {
        configFile = argv[++i];
        if (configFile === undefined) throw new UsageError("--config needs a FILE");
      } else if (arg.startsWith("--config=")) {
        configFile = arg.slice("--config=".length);
      } else if (arg.startsWith("-")) {
        throw new UsageError(`unknown option ${arg} before the command`);
      } else {
        break;
      }
    }
    let name = argv[i] ?? "serve";
    let rest = argv.slice(i + 1);
    if (name === "help") {
      // `keyward help settings get` is `keyward settings get --help`.
      name = rest.join(" ") || "--help";
      rest = ["--help"];
      if (name === "--help") {
        io.out(mainHelp());
        return EXIT.ok;
      }
    }
    if (name === "settings" || name.startsWith("settings ")) {
      const sub = name === "settings" ? rest[0] : name.slice("settings ".length);
      if (sub === undefined || sub === "-h" || sub === "--help") {
        (sub === undefined ? io.err : io.out)(settingsHelp());
        return sub === undefined ? EXIT.usage : EXIT.ok;
      }
      name = `settings ${sub}`;
      if (rest[0] === sub) rest = rest.slice(1);
    }
    const command = findCommand(name);
    if (!command) throw new UsageError(`unknown command "${name}"`);
    label = `keyward ${command.name}`;
    if (wantsHelp(rest)) {
      io.out(commandHelp(command));
      return EXIT.ok;
    }
    const { values, positionals } = parse(command, rest);
    if (typeof values.config === "string") configFile = values.config;
    if (configFile === "") throw new UsageError("--config needs a FILE");
    const input: CommandInput = {
      values,
      positionals,
      configFile,
      config: () => (loaded ??= loadEffectiveConfig({ env: io.env, file: configFile })),
      out: io.out,
      err: io.err,
    };
    return await command.run(input);
  } catch (error) {
    return report(error, label, io, loaded);
  }
}

function parse(command: CommandSpec, args: readonly string[]): { values: OptionValues; positionals: string[] } {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...args],
      options: { ...command.options, config: { type: "string" } },
      allowPositionals: true,
      strict: true,
    });
  } catch (error) {
    // parseArgs explains unknown options and missing values in one sentence.
    if ((error as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) throw new UsageError((error as Error).message);
    throw error;
  }
  const [min, max] = command.positionals;
  const count = parsed.positionals.length;
  if (count < min || count > max) {
    const extra = count > max ? `unexpected argument "${parsed.positionals[max]}"` : "missing arguments";
    throw new UsageError(`${extra}; usage: ${command.usage}`);
  }
  return { values: parsed.values as OptionValues, positionals: parsed.positionals };
}

function report(error: unknown, label: string, io: CliIo, loaded: EffectiveConfig | undefined): number {
  const debug = (loaded?.config.logLevel ?? io.env.KEYWARD_LOG_LEVEL?.toLowerCase()) === "debug";
  const { code, message } = describe(error, label);
  io.err(`${label}: ${message}`);
  if (debug && error instanceof Error && error.stack) io.err(error.stack);
  return code;
}

function describe(error: unknown, label: string): { code: number; message: string } {
  if (error instanceof UsageError) return { code: EXIT.usage, message: `${error.message} (see ${label} --help)` };
  if (error instanceof ConfigError) return { code: EXIT.usage, message: `invalid configuration: ${error.message}` };
  if (error instanceof KeywardError) {
    // Domain messages are written to be shown; a network cause adds only its code.
    const cause = (error.cause as { code?: unknown } | undefined)?.code;
    const suffix = error.kind === "unavailable" && typeof cause === "string" ? ` (${cause})` : "";
    const code = error.kind === "not_found" ? EXIT.notFound : error.kind === "invalid_argument" ? EXIT.usage : EXIT.failure;
    return { code, message: `${error.message}${suffix}` };
  }
  // Storage failures are sanitized before they get here; keep anything else to its first line.
  const text = error instanceof Error ? `${error.message}` : String(error);
  return { code: EXIT.failure, message: text.split("\n")[0]!.slice(0, 500) };
}
