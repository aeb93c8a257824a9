// Child processes of the bench: keyward (dist/main.js) and the ceiling server,
// each optionally pinned to CPUs with taskset, plus their memory from /proc.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { DEFAULT_V8_FLAGS } from "../../src/v8-flags.js";

/** dist/main.js next to this compiled file (dist/bench/bench/lib → dist/main.js), or from src via vitest. */
export function keywardMain(): string {
  const here = fileURLToPath(import.meta.url);
  const root = here.includes("/dist/bench/") ? here.slice(0, here.indexOf("/dist/bench/")) : fileURLToPath(new URL("../..", import.meta.url));
  return `${root.replace(/\/$/, "")}/dist/main.js`;
}

let tasksetAvailable: boolean | undefined;

/** True when `taskset` exists and the machine has at least two CPUs to split between server and load. */
export function canPin(): boolean {
  if (tasksetAvailable === undefined) {
    try {
      execFileSync("taskset", ["-p", String(process.pid)], { stdio: "ignore" });
      tasksetAvailable = true;
    } catch {
      tasksetAvailable = false;
    }
  }
  return tasksetAvailable;
}

/** argv prefixed with `taskset -c CPUS` when pinning is possible and asked for. */
export function pinned(cpus: string | undefined, argv: string[]): string[] {
  return cpus !== undefined && canPin() ? ["taskset", "-c", cpus, ...argv] : argv;
}

/** Moves this process (the load generator side) onto the given CPUs; false when not possible. */
export function pinSelf(cpus: string): boolean {
  if (!canPin()) return false;
  try {
    execFileSync("taskset", ["-pc", cpus, String(process.pid)], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

export interface ChildServer {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly port: number;
  output(): string;
  /** SIGTERM, then the exit code (SIGKILL after timeoutMs). */
  stop(timeoutMs?: number): Promise<number | null>;
}

interface SpawnOptions {
  argv: string[];
  env: Record<string, string>;
  /** Finds the port in the output so far; undefined while not listening yet. */
  ready: (output: string) => number | undefined;
  startTimeoutMs?: number;
}

// How much of a child's output is kept (BENCH_OUTPUT_TAIL: more, for V8 traces).
const OUTPUT_TAIL = Number(process.env.BENCH_OUTPUT_TAIL ?? 200_000);

async function spawnServer(options: SpawnOptions): Promise<ChildServer> {
  const [command, ...args] = options.argv;
  const child = spawn(command!, args, { env: options.env, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  const append = (d: Buffer) => {
    // Keep the tail only: a long bench must not hold every log line.
    out = (out + String(d)).slice(-OUTPUT_TAIL);
  };
  child.stdout!.on("data", append);
  child.stderr!.on("data", append);
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${options.argv.join(" ")} did not start:\n${out}`));
    }, options.startTimeoutMs ?? 60_000);
    const check = () => {
      const found = options.ready(out);
      if (found === undefined) return;
      clearTimeout(timer);
      child.stdout!.off("data", check);
      resolve(found);
    };
    child.stdout!.on("data", check);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`${options.argv.join(" ")} exited with ${code}:\n${out}`));
    });
  });
  return {
    child,
    pid: child.pid!,
    port,
    output: () => out,
    async stop(timeoutMs = 30_000) {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

export interface KeywardProcessOptions {
  env: Record<string, string>;
  /** taskset CPU list, e.g. "0"; undefined runs unpinned. */
  cpus?: string;
  /** Extra node flags, e.g. --cpu-prof. */
  nodeArgs?: string[];
  /** Another build's dist/main.js (bench:flags' BENCH_BASELINE); default: this checkout's. */
  main?: string;
}

/** Starts the compiled keyward (dist/main.js) on 127.0.0.1 and a free port. */
export function startKeywardProcess(options: KeywardProcessOptions): Promise<ChildServer> {
  return spawnServer({
    argv: pinned(options.cpus, [process.execPath, ...(options.nodeArgs ?? []), options.main ?? keywardMain()]),
    env: {
      PATH: process.env.PATH ?? "",
      KEYWARD_LISTEN: "127.0.0.1:0",
      KEYWARD_LOG_LEVEL: "info",
      ...options.env,
    },
    ready: (out) => {
      const m = /"address":"127\.0\.0\.1:(\d+)"[^\n]*"msg":"keyward listening"/.exec(out);
      return m ? Number(m[1]) : undefined;
    },
  });
}

/**
 * Starts the ceiling server (dist/bench/bench/ceiling-main.js) as a child, or
 * with "transport" keyward's transport serving an empty method
 * (transport-main.js), which runs with keyward's V8 flags as keyward does.
 */
export function startCeilingProcess(cpus: string | undefined, nodeArgs: string[] = [], kind: "ceiling" | "transport" = "ceiling"): Promise<ChildServer> {
  const entry = fileURLToPath(new URL(`../${kind}-main.js`, import.meta.url));
  const flags = kind === "transport" ? DEFAULT_V8_FLAGS : [];
  return spawnServer({
    argv: pinned(cpus, [process.execPath, ...flags, ...nodeArgs, entry]),
    env: { PATH: process.env.PATH ?? "" },
    ready: (out) => {
      const m = /\{"port":(\d+)/.exec(out);
      return m ? Number(m[1]) : undefined;
    },
  });
}

export interface Memory {
  /** Resident set size now, bytes. */
  rss: number;
  /** Peak resident set size, bytes. */
  hwm: number;
}

/** VmRSS and VmHWM of a process (Linux /proc). */
export function processMemory(pid: number): Memory {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN) * 1024;
  return { rss: kb("VmRSS"), hwm: kb("VmHWM") };
}

/** Child pids of a process (node:cluster workers of a keyward primary). */
export function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** Load average and CPU count, to say how busy the machine was. */
export function machineLoad(): { loadAverage: number[]; cpus: number } {
  const [a, b, c] = readFileSync("/proc/loadavg", "utf8").split(" ").map(Number);
  return { loadAverage: [a!, b!, c!], cpus: Number(execFileSync("nproc").toString().trim()) };
}

/** Busy seconds (all but idle and iowait) of the CPUs in a taskset list ("1", "0,1"), so far (Linux /proc/stat). */
export function cpuBusySeconds(cpuList: string): number {
  const wanted = new Set(cpuList.split(",").map((c) => `cpu${c.trim()}`));
  let busy = 0;
  for (const line of readFileSync("/proc/stat", "utf8").split("\n")) {
    const [name, ...ticks] = line.split(" ");
    if (!wanted.has(name!)) continue;
    // user nice system idle iowait irq softirq steal (guest time is already in user and nice).
    const [user, nice, system, , , irq, softirq, steal] = ticks.map(Number);
    busy += user! + nice! + system! + irq! + softirq! + steal!;
  }
  return busy / 100;
}

/** CPU time (user + system) a process and its live children have used so far, seconds (Linux /proc). */
export function cpuSeconds(pid: number): number {
  const ticks = (p: number) => {
    try {
      // Fields after the parenthesised command name: utime and stime are the 12th and 13th.
      const stat = readFileSync(`/proc/${p}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      return Number(fields[11]) + Number(fields[12]);
    } catch {
      return 0;
    }
  };
  let total = ticks(pid);
  for (const child of childPids(pid)) total += ticks(child);
  // USER_HZ is 100 on Linux.
  return total / 100;
}
