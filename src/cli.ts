#!/usr/bin/env node
// The package's bin: `npx keyward <command>` (see src/cli/commands.ts, or `keyward --help`).
import { runCli } from "./cli/run.js";

const code = await runCli(process.argv.slice(2));
// undefined: serve is running and exits on its own signal handling.
if (code !== undefined) process.exitCode = code;
