// Runs h2load (Debian's nghttp2-client) and reads its summary plus the
// per-request log (--log-file) for latency percentiles: h2load itself prints
// only min/max/mean. h2load never reads gRPC trailers, so callers check the
// counts and byte totals returned here against what each answer must be.
import { execFile, execFileSync } from "node:child_process";
import { readFile, rm } from "node:fs/promises";
import { pinned } from "./processes.js";
import { percentiles, type Percentiles } from "./stats.js";

export interface H2loadOptions {
  url: string;
  /** Request body (POST); h2load sends the same bytes on every request. */
  bodyFile: string;
  headers: Record<string, string>;
  clients: number;
  /** Concurrent streams per client (-m); HTTP/1.1 always has one. */
  streams: number;
  /** Exact request count (-n): every request is accounted for, unlike -D. */
  requests: number;
  http1?: boolean;
  /** taskset CPU list for h2load. */
  cpus?: string;
  logFile: string;
  timeoutMs?: number;
}

export interface H2loadResult {
  requests: number;
  done: number;
  succeeded: number;
  failed: number;
  errored: number;
  timeout: number;
  status2xx: number;
  statusOther: number;
  /** Response body bytes (DATA frames) over all requests. */
  dataBytes: number;
  elapsedSeconds: number;
  rps: number;
  latencyUs: Percentiles;
  /** Per-request log rows that were not status 200. */
  non200Logged: number;
}

/** True when h2load is on PATH. */
export function hasH2load(): boolean {
  try {
    execFileSync("h2load", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/** Installs nghttp2-client with apt when h2load is missing (the bench needs it; needs root). */
export function ensureH2load(log: (line: string) => void = () => {}): void {
  if (hasH2load()) return;
  log("h2load not found: installing nghttp2-client with apt-get");
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  execFileSync("apt-get", ["update", "-qq"], { stdio: "inherit", env });
  execFileSync("apt-get", ["install", "-y", "-qq", "--no-install-recommends", "nghttp2-client"], { stdio: "inherit", env });
  if (!hasH2load()) throw new Error("h2load is still missing after installing nghttp2-client");
}

function num(text: string, re: RegExp, what: string): number {
  const m = re.exec(text);
  if (!m) throw new Error(`h2load output has no ${what}:\n${text}`);
  return Number(m[1]);
}

const UNIT_SECONDS: Record<string, number> = { s: 1, ms: 1e-3, us: 1e-6 };

export async function runH2load(options: H2loadOptions): Promise<H2loadResult> {
  // h2load appends to an existing log file.
  await rm(options.logFile, { force: true });
  const requests = options.requests;
  const args: string[] = [];
  args.push(
    "-n", String(requests),
    "-c", String(options.clients),
    "-m", String(options.http1 ? 1 : options.streams),
    "-t", "1",
    "-d", options.bodyFile,
    `--log-file=${options.logFile}`,
  );
  for (const [name, value] of Object.entries(options.headers)) args.push("-H", `${name}: ${value}`);
  if (options.http1) args.push("--h1");
  args.push(options.url);
  const [command, ...rest] = pinned(options.cpus, ["h2load", ...args]);
  const output = await new Promise<string>((resolve, reject) => {
    execFile(command!, rest, { timeout: options.timeoutMs ?? 120_000, maxBuffer: 8 << 20 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`h2load failed: ${error.message}\n${stdout}${stderr}`));
      else resolve(stdout);
    });
  });

  const finished = /finished in ([\d.]+)(s|ms|us), ([\d.]+) req\/s/.exec(output);
  if (!finished) throw new Error(`h2load output has no summary:\n${output}`);
  const elapsedSeconds = Number(finished[1]) * UNIT_SECONDS[finished[2]!]!;
  const done = num(output, /requests: \d+ total, \d+ started, (\d+) done/, "done count");
  const status = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(output);
  if (!status) throw new Error(`h2load output has no status codes:\n${output}`);

  const latencies: number[] = [];
  let non200Logged = 0;
  for (const line of (await readFile(options.logFile, "utf8")).split("\n")) {
    if (line === "") continue;
    const [, code, micros] = line.split("\t");
    if (code !== "200") non200Logged++;
    latencies.push(Number(micros));
  }
  await rm(options.logFile, { force: true });

  return {
    requests,
    done,
    succeeded: num(output, /(\d+) succeeded/, "succeeded count"),
    failed: num(output, /(\d+) failed/, "failed count"),
    errored: num(output, /(\d+) errored/, "errored count"),
    timeout: num(output, /(\d+) timeout/, "timeout count"),
    status2xx: Number(status[1]),
    statusOther: Number(status[2]) + Number(status[3]) + Number(status[4]),
    dataBytes: num(output, /traffic: .*?, [\d.]+[KMG]?B \((\d+)\) data/, "data bytes"),
    elapsedSeconds,
    rps: done / elapsedSeconds,
    latencyUs: percentiles(latencies),
    non200Logged,
  };
}

/**
 * What every h2load run must satisfy: all requests done and answered 200,
 * none failed, and (when the answer has a fixed size) exactly that many
 * response bytes each. Returns the problems found, empty when none.
 */
export function h2loadProblems(result: H2loadResult, bytesEach?: { min: number; max: number }): string[] {
  const problems: string[] = [];
  const n = result.requests;
  if (result.done !== n) problems.push(`${result.done} of ${n} requests done`);
  if (result.succeeded !== n) problems.push(`${result.succeeded} of ${n} succeeded`);
  if (result.failed + result.errored + result.timeout > 0) {
    problems.push(`${result.failed} failed, ${result.errored} errored, ${result.timeout} timed out`);
  }
  if (result.status2xx !== n || result.statusOther > 0) problems.push(`${result.status2xx} 2xx and ${result.statusOther} other statuses for ${n} requests`);
  if (result.non200Logged > 0) problems.push(`${result.non200Logged} logged requests were not HTTP 200`);
  if (result.latencyUs.count !== n) problems.push(`${result.latencyUs.count} rows in the request log for ${n} requests`);
  if (bytesEach) {
    const { min, max } = bytesEach;
    if (result.dataBytes < n * min || result.dataBytes > n * max) {
      const each = min === max ? `${min}` : `${min}-${max}`;
      problems.push(`${result.dataBytes} response bytes for ${n} requests; expected ${each} each (${(result.dataBytes / n).toFixed(2)} on average)`);
    }
  }
  return problems;
}
