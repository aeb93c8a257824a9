// Runs the compiled server (dist/main.js, built by `npm test` before vitest)
// as a real child process.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

export const MAIN = fileURLToPath(new URL("../../dist/main.js", import.meta.url));
/** The package's bin (`keyward <command>`). */
export const CLI = fileURLToPath(new URL("../../dist/cli.js", import.meta.url));

export interface RunOptions {
  /** Defaults to MAIN; CLI with args ["serve"] runs the same server through the bin. */
  script?: string;
  args?: string[];
}

export interface ServerProcess {
  child: ChildProcess;
  baseUrl: string;
  output: () => string;
  /** Sends the signal and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export function assertBuilt(): void {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run \`npm run build\` (npm test does it first)`);
}

export function runMain(
  env: Record<string, string>,
  options: RunOptions = {},
): { child: ChildProcess; output: () => string; exited: Promise<number | null> } {
  assertBuilt();
  const child = spawn(process.execPath, [options.script ?? MAIN, ...(options.args ?? [])], {
    env: { PATH: process.env.PATH ?? "", KEYWARD_LISTEN: "127.0.0.1:0", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout!.on("data", (d) => (out += String(d)));
  child.stderr!.on("data", (d) => (out += String(d)));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return { child, output: () => out, exited };
}

export async function startMain(env: Record<string, string>, options: RunOptions = {}): Promise<ServerProcess> {
  const { child, output, exited } = runMain(env, options);
  const baseUrl = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      // Never leave a half-started server behind.
      child.kill("SIGKILL");
      reject(new Error(`server did not start:\n${output()}`));
    }, 20_000);
    const check = () => {
      const m = /"address":"([^"]+)"[^\n]*"msg":"keyward listening"/.exec(output());
      if (m) {
        clearTimeout(timer);
        child.stdout!.off("data", check);
        resolve(`http://${m[1]}`);
      }
    };
    child.stdout!.on("data", check);
    exited.then((code) => reject(new Error(`server exited with ${code}:\n${output()}`)));
  });
  return {
    child,
    baseUrl,
    output,
    stop(signal = "SIGTERM") {
      child.kill(signal);
      return exited;
    },
  };
}
