// bench/propagation: how long after a revoke through one keyward instance does
// every other instance deny the key?
//
// For each K (default 2, 8, 32) the bench creates a fresh PostgreSQL database,
// starts K keyward processes on it (dist/main.js, small caches, 60 s TTL so only
// the change feed can explain a fast denial), issues keys through instance 0,
// warms every instance's cache with each key, then revokes the keys one at a
// time through instance 0. From the moment the Revoke is sent, every other
// instance is polled with Verify over its own persistent gRPC (HTTP/2)
// connection until it answers REVOKED; that elapsed time is one sample.
// Samples include up to one poll interval and one Verify round trip.
//
// Usage: npm run bench:propagation [-- --k=2,8,32 --keys=20 --poll-ms=5]
// PostgreSQL: KEYWARD_BENCH_PG_URL or KEYWARD_TEST_PG_URL (default postgres://postgres@127.0.0.1:5432/postgres).
// Writes bench/results/propagation.{json,md}.
import { randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { connect as connectH2, type ClientHttp2Session } from "node:http2";
import { cpus, loadavg } from "node:os";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { KeyService, VerifyCode, VerifyRequestSchema, VerifyResponseSchema } from "../../src/gen/keyward/v1/keys_pb.js";
import { createPgClient } from "../../src/storage/pg-client.js";
import { percentiles, startKeywardProcess, type KeywardProcess } from "./support.js";

const ADMIN_TOKEN = `bench-${randomBytes(16).toString("hex")}`;
// Every request stays on this machine.
const HOST = "127.0.0.1";
// No sample waits longer than this; a miss is reported, not hidden.
const DEADLINE_MS = 10_000;
// Starting 32 Node processes at once on 2 cores mostly measures the scheduler.
const START_BATCH = 8;

const { values: args } = parseArgs({
  options: {
    k: { type: "string", default: "2,8,32" },
    keys: { type: "string", default: "20" },
    "poll-ms": { type: "string", default: "5" },
    out: { type: "string", default: fileURLToPath(new URL("../../../../bench/results/", import.meta.url)) },
  },
});
const ks = args.k.split(",").map(Number);
const keysPerRun = Number(args.keys);
const pollMs = Number(args["poll-ms"]);
if (ks.some((k) => !Number.isInteger(k) || k < 2 || k > 64) || !(keysPerRun >= 1 && keysPerRun <= 200) || !(pollMs >= 1)) {
  throw new Error("usage: --k=2,8,32 (2..64 each) --keys=1..200 --poll-ms=>=1");
}

type Keys = Client<typeof KeyService>;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const admin = { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } };

function pgBase(): URL {
  return new URL(process.env.KEYWARD_BENCH_PG_URL ?? process.env.KEYWARD_TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432/postgres");
}

async function adminQuery(sql: string): Promise<Record<string, unknown>[]> {
  const client = createPgClient({ connectionString: pgBase().toString(), connectionTimeoutMillis: 5_000 });
  await client.connect();
  try {
    return (await client.query(sql)).rows;
  } finally {
    await client.end();
  }
}

interface RunResult {
  k: number;
  keys: number;
  /** Per other instance and key: ms from sending Revoke to the first REVOKED answer. */
  samples: number[];
  /** Samples that did not deny within DEADLINE_MS. */
  missed: number;
  /** Revoke RPC round trips through instance 0. */
  revokeMs: number[];
  /** Per sample: ms after the Revoke call returned (negative: denied before the answer arrived). */
  afterAckMs: number[];
  /** 1-minute load average when the run started: this machine is shared. */
  load1: number;
  startMs: number;
  /** Connections on the database while all K instances were up. */
  pgConnections: number;
}

/**
 * One persistent HTTP/2 connection speaking unary gRPC to one instance's Verify.
 * Raw node:http2 rather than an RPC client: with 31 instances polled from one
 * process on 2 shared cores, client overhead would be measured as propagation.
 */
interface VerifyChannel {
  verify(request: Buffer): Promise<VerifyCode>;
  close(): void;
}

/** A length-prefixed gRPC message for this key, built once per key. */
function verifyFrame(key: string): Buffer {
  const message = toBinary(VerifyRequestSchema, create(VerifyRequestSchema, { key }));
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt32BE(message.length, 1);
  frame.set(message, 5);
  return frame;
}

function openVerifyChannel(port: number): VerifyChannel {
  const session: ClientHttp2Session = connectH2(`http://${HOST}:${port}`);
  session.on("error", () => {});
  return {
    verify(request) {
      return new Promise((resolve, reject) => {
        const stream = session.request({
          ":method": "POST",
          ":path": "/keyward.v1.KeyService/Verify",
          "content-type": "application/grpc",
          te: "trailers",
        });
        const chunks: Buffer[] = [];
        let status: string | undefined;
        let message: string | undefined;
        const read = (headers: Record<string, unknown>) => {
          status = (headers["grpc-status"] as string | undefined) ?? status;
          message = (headers["grpc-message"] as string | undefined) ?? message;
        };
        stream.on("response", read);
        stream.on("trailers", read);
        stream.on("data", (chunk: Buffer) => chunks.push(chunk));
        stream.on("error", reject);
        stream.on("end", () => {
          const body = Buffer.concat(chunks);
          if (status !== "0" || body.length < 5) {
            return reject(new Error(`Verify failed: grpc-status ${status} ${decodeURIComponent(message ?? "")}`));
          }
          resolve(fromBinary(VerifyResponseSchema, body.subarray(5, 5 + body.readUInt32BE(1))).code);
        });
        stream.end(request);
      });
    },
    close: () => session.close(),
  };
}

/** Polls one instance until it answers REVOKED; ms since `t0`, or undefined past the deadline. */
async function timeToDeny(channel: VerifyChannel, request: Buffer, t0: number): Promise<number | undefined> {
  while (performance.now() - t0 < DEADLINE_MS) {
    const code = await channel.verify(request);
    if (code === VerifyCode.REVOKED) return performance.now() - t0;
    if (code !== VerifyCode.VALID) throw new Error(`unexpected ${VerifyCode[code]}`);
    await sleep(pollMs);
  }
  return undefined;
}

// Each instance holds its listening connection plus (with sequential lookups) one pooled one.
const CONNECTIONS_PER_INSTANCE = 2;

/**
 * The PostgreSQL server may be shared (other test suites): wait, bounded, until
 * K instances fit under max_connections rather than fail half-way with 53300.
 */
async function waitForConnectionHeadroom(k: number): Promise<void> {
  const needed = Math.ceil(k * CONNECTIONS_PER_INSTANCE) + 5;
  const deadline = Date.now() + 120_000;
  for (;;) {
    const [row] = await adminQuery(
      "select current_setting('max_connections')::int - (select count(*) from pg_stat_activity)::int as free",
    );
    const free = Number(row?.free ?? 0);
    if (free >= needed) return;
    if (Date.now() > deadline) throw new Error(`PostgreSQL has ${free} free connections, K=${k} needs about ${needed}`);
    process.stderr.write(`K=${k}: waiting for ${needed} free PostgreSQL connections (${free} now)\n`);
    await sleep(5_000);
  }
}

async function run(k: number): Promise<RunResult> {
  await waitForConnectionHeadroom(k);
  const dbName = `keyward_bench_${randomBytes(5).toString("hex")}`;
  await adminQuery(`create database ${dbName}`);
  const url = pgBase();
  url.pathname = `/${dbName}`;
  const env = {
    KEYWARD_DATABASE_URL: url.toString(),
    KEYWARD_ADMIN_TOKEN: ADMIN_TOKEN,
    // Lean processes; and a TTL long enough that only a notification explains a fast denial.
    KEYWARD_CACHE_MAX_ENTRIES: "1000",
    KEYWARD_CACHE_TTL_SECONDS: "60",
    KEYWARD_NEGATIVE_CACHE_TTL_SECONDS: "60",
    // Usage is written at shutdown only: a periodic flush would hold a second pooled
    // connection per instance, and 32 instances must fit in max_connections = 100.
    KEYWARD_USAGE_FLUSH_SECONDS: "3600",
  };
  const instances: KeywardProcess[] = [];
  const channels: VerifyChannel[] = [];
  try {
    const started = performance.now();
    // The first one migrates alone; the rest start in batches.
    instances.push(await startInstance(env));
    while (instances.length < k) {
      const batch = Math.min(START_BATCH, k - instances.length);
      const started = await Promise.allSettled(Array.from({ length: batch }, () => startInstance(env)));
      // Keep the ones that started, so `finally` stops them, before reporting one that did not.
      for (const r of started) if (r.status === "fulfilled") instances.push(r.value);
      const failed = started.find((r) => r.status === "rejected");
      if (failed) throw (failed as PromiseRejectedResult).reason;
    }
    const startMs = performance.now() - started;
    for (const instance of instances) channels.push(openVerifyChannel(instance.port));
    const origin: Keys = createClient(KeyService, createGrpcTransport({ baseUrl: `http://${HOST}:${instances[0]!.port}` }));
    const others = channels.slice(1);

    const issued: { request: Buffer; id: string }[] = [];
    for (let i = 0; i < keysPerRun; i++) {
      const { key, apiKey } = await origin.issue({ tenantId: "bench", name: `propagation ${i}` }, admin);
      issued.push({ request: verifyFrame(key), id: apiKey!.id });
    }
    // Warm: every instance caches every key as valid (one load each, then hits).
    await settleAll(
      instances,
      channels.map(async (channel) => {
        for (const { request } of issued) {
          for (let n = 0; n < 2; n++) {
            const code = await channel.verify(request);
            if (code !== VerifyCode.VALID) throw new Error(`warm-up: ${VerifyCode[code]}`);
          }
        }
      }),
    );
    const pgConnections = Number(
      (await adminQuery(`select count(*)::int as n from pg_stat_activity where datname = '${dbName}'`))[0]?.n ?? 0,
    );

    const samples: number[] = [];
    const revokeMs: number[] = [];
    const afterAckMs: number[] = [];
    const load1 = loadavg()[0]!;
    let missed = 0;
    for (const { request, id } of issued) {
      const t0 = performance.now();
      const revoke = origin.revoke({ id, reason: "bench" }, admin).then(() => performance.now() - t0);
      revoke.catch(() => {}); // awaited below; never left unhandled if polling fails first
      const times = await settleAll(instances.slice(1), others.map((channel) => timeToDeny(channel, request, t0)));
      const acked = await revoke;
      revokeMs.push(acked);
      for (const t of times) {
        if (t === undefined) missed++;
        else {
          samples.push(t);
          afterAckMs.push(t - acked);
        }
      }
      // Let the instances go quiet before the next key.
      await sleep(50);
    }
    return { k, keys: keysPerRun, samples, missed, revokeMs, afterAckMs, load1, startMs, pgConnections };
  } finally {
    for (const channel of channels) channel.close();
    await Promise.all(instances.map((instance) => instance.stop(10_000)));
    await adminQuery(`drop database if exists ${dbName} with (force)`);
  }
}

/** Like Promise.all, but waits for every task (none left unhandled) and names the failing instance with its log tail. */
async function settleAll<T>(instances: KeywardProcess[], tasks: Promise<T>[]): Promise<T[]> {
  const settled = await Promise.allSettled(tasks);
  const failed = settled.findIndex((r) => r.status === "rejected");
  if (failed >= 0) {
    const reason = (settled[failed] as PromiseRejectedResult).reason as Error;
    throw new Error(`instance on port ${instances[failed]?.port}: ${reason.message}\n${instances[failed]?.output().slice(-2_000)}`);
  }
  return settled.map((r) => (r as PromiseFulfilledResult<T>).value);
}

function startInstance(env: Record<string, string>): Promise<KeywardProcess> {
  return startKeywardProcess({ env });
}

const fmt = (ms: number) => (Number.isFinite(ms) ? ms.toFixed(1) : "–");

async function main(): Promise<void> {
  const results: RunResult[] = [];
  for (const k of ks) {
    process.stderr.write(`K=${k}: starting ${k} instances...\n`);
    const result = await run(k);
    const p = percentiles(result.samples);
    process.stderr.write(`K=${k}: ${p.count} samples, p50 ${fmt(p.p50)} ms, p99 ${fmt(p.p99)} ms, max ${fmt(p.max)} ms, missed ${result.missed}\n`);
    results.push(result);
  }

  const rows = results.map((r) => {
    const p = percentiles(r.samples);
    const revoke = percentiles(r.revokeMs);
    const after = percentiles(r.afterAckMs);
    return {
      k: r.k,
      samples: p.count,
      missed: r.missed,
      p50: p.p50,
      p99: p.p99,
      max: p.max,
      mean: p.mean,
      revokeP50: revoke.p50,
      afterAckP50: after.p50,
      afterAckP99: after.p99,
      load1: r.load1,
      startMs: r.startMs,
      pgConnections: r.pgConnections,
    };
  });
  const machine = { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? "", loadAverage: loadavg(), node: process.version };
  const table = [
    "| K instances | samples (keys × other instances) | p50 ms | p99 ms | max ms | missed (> 10 s) | Revoke RPC p50 ms | after Revoke returned p50 / p99 ms | load avg (1 min) |",
    "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ...rows.map(
      (r) =>
        `| ${r.k} | ${r.samples} | ${fmt(r.p50)} | ${fmt(r.p99)} | ${fmt(r.max)} | ${r.missed} | ${fmt(r.revokeP50)} | ` +
        `${fmt(r.afterAckP50)} / ${fmt(r.afterAckP99)} | ${r.load1.toFixed(1)} |`,
    ),
  ].join("\n");
  const markdown = [
    "# Revocation propagation",
    "",
    `Time from sending Revoke to instance 0 until each other instance answers Verify with REVOKED, polled every ${pollMs} ms ` +
      `over one HTTP/2 gRPC connection per instance (so each sample includes up to ${pollMs} ms of polling and one Verify round trip). ` +
      `Cache TTL 60 s on every instance: without the change feed every sample would be a miss. ${keysPerRun} keys per K, one fresh PostgreSQL database per K, ` +
      `all processes on one machine (${machine.cpus} CPUs, ${machine.cpuModel}, Node ${machine.node}). ` +
      `p50/p99/max count from the moment Revoke is sent, so they include the Revoke's own commit; ` +
      `"after Revoke returned" subtracts that key's Revoke round trip (negative: denied before the answer arrived).`,
    "",
    table,
    "",
  ].join("\n");

  mkdirSync(args.out, { recursive: true });
  writeFileSync(`${args.out}/propagation.json`, `${JSON.stringify({ date: new Date().toISOString(), pollMs, keysPerRun, deadlineMs: DEADLINE_MS, machine, rows, raw: results }, null, 2)}\n`);
  writeFileSync(`${args.out}/propagation.md`, markdown);
  process.stdout.write(`${markdown}\nwritten to ${args.out}propagation.{json,md}\n`);
  if (results.some((r) => r.missed > 0)) process.exitCode = 1;
}

await main();
