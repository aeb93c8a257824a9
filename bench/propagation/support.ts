// Child keyward processes and percentiles for bench/propagation. Kept here, not
// shared, so this bench builds and runs on its own.
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";

/** dist/main.js of this checkout, from dist/bench/bench/propagation/ (compiled) or bench/propagation/ (source). */
export function keywardMain(): string {
  const here = fileURLToPath(import.meta.url);
  const cut = here.indexOf("/dist/bench/");
  const root = cut >= 0 ? here.slice(0, cut) : fileURLToPath(new URL("../..", import.meta.url)).replace(/\/$/, "");
  return `${root}/dist/main.js`;
}

export interface KeywardProcess {
  readonly child: ChildProcess;
  readonly port: number;
  output(): string;
  /** SIGTERM, then the exit code (SIGKILL after timeoutMs). */
  stop(timeoutMs?: number): Promise<number | null>;
}

/** Starts dist/main.js on 127.0.0.1 and a free port; resolves once it logs "keyward listening". */
export function startKeywardProcess(options: { env: Record<string, string>; startTimeoutMs?: number }): Promise<KeywardProcess> {
  const child = spawn(process.execPath, [keywardMain()], {
    env: { PATH: process.env.PATH ?? "", KEYWARD_LISTEN: "127.0.0.1:0", KEYWARD_LOG_LEVEL: "info", ...options.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  // Keep the tail only: a long run must not hold every log line.
  const append = (d: Buffer) => (out = (out + String(d)).slice(-100_000));
  child.stdout!.on("data", append);
  child.stderr!.on("data", append);
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`keyward did not start:\n${out}`)), options.startTimeoutMs ?? 60_000);
    const check = () => {
      const m = /"address":"127\.0\.0\.1:(\d+)"[^\n]*"msg":"keyward listening"/.exec(out);
      if (!m) return;
      clearTimeout(timer);
      child.stdout!.off("data", check);
      resolve({
        child,
        port: Number(m[1]),
        output: () => out,
        async stop(timeoutMs = 30_000) {
          if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
          child.kill("SIGTERM");
          const kill = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
          const code = await exited;
          clearTimeout(kill);
          return code;
        },
      });
    };
    child.stdout!.on("data", check);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`keyward exited with ${code}:\n${out}`));
    });
  });
}

export interface Percentiles {
  count: number;
  p50: number;
  p99: number;
  max: number;
  mean: number;
}

/** Nearest-rank percentiles over raw samples. */
export function percentiles(samples: readonly number[]): Percentiles {
  const sorted = Float64Array.from(samples).sort();
  const n = sorted.length;
  if (n === 0) return { count: 0, p50: NaN, p99: NaN, max: NaN, mean: NaN };
  const at = (q: number) => sorted[Math.min(n - 1, Math.max(0, Math.ceil(q * n) - 1))]!;
  return { count: n, p50: at(0.5), p99: at(0.99), max: sorted[n - 1]!, mean: sorted.reduce((a, b) => a + b, 0) / n };
}
