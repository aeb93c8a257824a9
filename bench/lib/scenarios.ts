// The h2load-driven scenarios of the bench and their correctness checks.
// h2load cannot see gRPC trailers, so each run is accepted only when:
//   - a probe with the very same headers and body decodes to the expected
//     answer (grpc-status 0 and, e.g., VERIFY_CODE_VALID or Check allowed);
//   - h2load reports every request done, succeeded and HTTP 200;
//   - the response bytes are what that answer weighs (exactly, for answers
//     of fixed size; an error would be a trailers-only response of 0 bytes);
//   - for valid keys, keyward's usage count of the key grew by exactly the
//     number of requests (usage is counted only on a valid decision).
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { HealthCheckResponse_ServingStatus } from "../../src/gen/grpc/health/v1/health_pb.js";
import { VerifyCode } from "../../src/gen/keyward/v1/keys_pb.js";
import type { AdminClient, IssuedKey } from "./admin.js";
import { countsBetween, type StatementCounts } from "./pg-wire-counter.js";
import { cpuBusySeconds, cpuSeconds } from "./processes.js";
import { fromBinary } from "@bufbuild/protobuf";
import { CheckResponseSchema } from "../../src/gen/envoy/service/auth/v3/external_auth_pb.js";
import { HealthCheckResponseSchema } from "../../src/gen/grpc/health/v1/health_pb.js";
import { VerifyResponseSchema } from "../../src/gen/keyward/v1/keys_pb.js";
import { grpcAnswer, type Http2LoadOptions } from "./http2-load.js";
import { h2loadProblems, runH2load, type H2loadResult } from "./h2load.js";
import {
  CEILING_PATH,
  CHECK_PATH,
  checkBody,
  checkOutcome,
  decodeCheck,
  decodeHealth,
  decodeVerify,
  GRPC_HEADERS,
  HEALTH_PATH,
  healthBody,
  JSON_HEADERS,
  probeGrpc,
  probeHttp1,
  VERIFY_PATH,
  verifyBody,
  verifyJsonBody,
} from "./requests.js";

export type ScenarioId =
  | "ceiling"
  | "transport"
  | "health"
  | "verify-hit"
  | "check-hit"
  | "connect-json-h1"
  | "verify-unknown-repeated"
  | "verify-malformed";

export interface Scenario {
  id: ScenarioId;
  title: string;
  /** ceiling: the raw node:http2 server; transport: keyward's transport with an empty method (lib/transport-server.ts). */
  target: "ceiling" | "transport" | "keyward";
  path: string;
  headers: Record<string, string>;
  body: Buffer;
  bodyFile: string;
  http1: boolean;
  /** The answer every request must get. */
  expected: string;
  /** Key whose usage count must grow by one per request (valid answers only). */
  usageKeyId?: string;
  /** Checks one answer read by the node:http2 client (HTTP/2 scenarios only). */
  checkAnswer?: Http2LoadOptions["check"];
  /** Sends one request with the same bytes; returns the answer and the response bytes it weighs. */
  probe(baseUrl: string): Promise<{ answer: string; bytesEach: { min: number; max: number } }>;
}

export interface ScenarioKeys {
  verify: IssuedKey;
  check: IssuedKey;
  /** Well-formed (checksum right) but never issued. */
  unknown: string;
  /** Right length and alphabet, wrong checksum. */
  malformed: string;
  /** Scopes every request requires (the hot keys hold them). */
  scopes: string[];
}

// Usage count, remaining rate limit and last_used_at change a valid answer's
// size by a few bytes between calls; the usage count check is the exact one.
const VARYING = 8;

const fixed = (n: number) => ({ min: n, max: n });

const verifyAnswer = (expected: VerifyCode) =>
  grpcAnswer((payload) => {
    const code = fromBinary(VerifyResponseSchema, payload).code;
    return code === expected ? undefined : `answer ${verifyCodeName(code)}, expected ${verifyCodeName(expected)}`;
  });
const around = (n: number) => ({ min: n - VARYING, max: n + VARYING });

function verifyCodeName(code: VerifyCode): string {
  return `VERIFY_CODE_${VerifyCode[code]}`;
}

/** Builds the scenarios and writes their bodies under workDir (h2load reads files). */
export function createScenarios(keys: ScenarioKeys, workDir: string): Scenario[] {
  const grpc = { ...GRPC_HEADERS };
  const make = (s: Omit<Scenario, "bodyFile">): Scenario => {
    const bodyFile = join(workDir, `${s.id}.body`);
    writeFileSync(bodyFile, s.body);
    return { ...s, bodyFile };
  };
  const verifyProbe = (body: Buffer, expectValid: boolean) => async (baseUrl: string) => {
    const probe = await probeGrpc(baseUrl, VERIFY_PATH, grpc, body);
    const answer = verifyCodeName(decodeVerify(probe).code);
    return { answer, bytesEach: expectValid ? around(probe.bodyBytes) : fixed(probe.bodyBytes) };
  };
  const verifyHit = verifyBody(keys.verify.key, keys.scopes);
  // The ceiling and keyward's bare transport answer the same empty message.
  const empty = (id: "ceiling" | "transport", title: string) =>
    make({
      id,
      title,
      target: id,
      path: CEILING_PATH,
      headers: grpc,
      // The same request as a Verify hit, so the request side costs the same.
      body: verifyHit,
      http1: false,
      expected: "grpc-status 0, empty message",
      checkAnswer: (a) => (a.status === 200 && a.grpcStatus === "0" && a.body.equals(Buffer.alloc(5)) ? undefined : `HTTP ${a.status}, grpc-status ${a.grpcStatus}, ${a.body.length} bytes`),
      async probe(baseUrl) {
        const probe = await probeGrpc(baseUrl, CEILING_PATH, grpc, verifyHit);
        const answer = probe.grpcStatus === "0" && probe.bodyBytes === 5 ? "grpc-status 0, empty message" : `grpc-status ${probe.grpcStatus}, ${probe.bodyBytes} bytes`;
        return { answer, bytesEach: fixed(5) };
      },
    });
  return [
    empty("ceiling", "ceiling: empty unary handler, raw node:http2"),
    empty("transport", "keyward's transport alone: server.ts + the lean gRPC path, empty method"),
    make({
      id: "health",
      title: "grpc.health.v1.Health/Check",
      target: "keyward",
      path: HEALTH_PATH,
      headers: grpc,
      body: healthBody(""),
      http1: false,
      expected: "SERVING",
      checkAnswer: grpcAnswer((payload) =>
        fromBinary(HealthCheckResponseSchema, payload).status === HealthCheckResponse_ServingStatus.SERVING ? undefined : "not SERVING",
      ),
      async probe(baseUrl) {
        const probe = await probeGrpc(baseUrl, HEALTH_PATH, grpc, healthBody(""));
        return { answer: HealthCheckResponse_ServingStatus[decodeHealth(probe).status] ?? "?", bytesEach: fixed(probe.bodyBytes) };
      },
    }),
    make({
      id: "verify-hit",
      title: "Verify, cache hit",
      target: "keyward",
      path: VERIFY_PATH,
      headers: grpc,
      body: verifyHit,
      http1: false,
      expected: "VERIFY_CODE_VALID",
      usageKeyId: keys.verify.id,
      checkAnswer: verifyAnswer(VerifyCode.VALID),
      probe: verifyProbe(verifyHit, true),
    }),
    make({
      id: "check-hit",
      title: "ext_authz Check, cache hit (10 headers, required_scopes)",
      target: "keyward",
      path: CHECK_PATH,
      headers: grpc,
      body: checkBody(keys.check.key, keys.scopes),
      http1: false,
      expected: "allowed",
      usageKeyId: keys.check.id,
      checkAnswer: grpcAnswer((payload) => {
        const outcome = checkOutcome(fromBinary(CheckResponseSchema, payload));
        return outcome === "allowed" ? undefined : outcome;
      }),
      async probe(baseUrl) {
        const probe = await probeGrpc(baseUrl, CHECK_PATH, grpc, checkBody(keys.check.key, keys.scopes));
        return { answer: checkOutcome(decodeCheck(probe)), bytesEach: around(probe.bodyBytes) };
      },
    }),
    make({
      id: "connect-json-h1",
      title: "Verify, Connect JSON over HTTP/1.1, cache hit",
      target: "keyward",
      path: VERIFY_PATH,
      headers: { ...JSON_HEADERS },
      body: verifyJsonBody(keys.verify.key, keys.scopes),
      http1: true,
      expected: "VERIFY_CODE_VALID",
      usageKeyId: keys.verify.id,
      async probe(baseUrl) {
        const res = await probeHttp1(baseUrl, VERIFY_PATH, { ...JSON_HEADERS }, verifyJsonBody(keys.verify.key, keys.scopes));
        if (res.status !== 200) return { answer: `HTTP ${res.status}: ${res.body.toString()}`, bytesEach: fixed(0) };
        const json = JSON.parse(res.body.toString()) as { valid?: boolean; code?: string };
        return { answer: json.valid === true ? String(json.code) : `invalid: ${json.code}`, bytesEach: { min: res.body.length - 12, max: res.body.length + 12 } };
      },
    }),
    make({
      id: "verify-unknown-repeated",
      title: "Verify, one unknown well-formed key, repeated (negative cache)",
      target: "keyward",
      path: VERIFY_PATH,
      headers: grpc,
      body: verifyBody(keys.unknown, keys.scopes),
      http1: false,
      expected: "VERIFY_CODE_NOT_FOUND",
      checkAnswer: verifyAnswer(VerifyCode.NOT_FOUND),
      probe: verifyProbe(verifyBody(keys.unknown, keys.scopes), false),
    }),
    make({
      id: "verify-malformed",
      title: "Verify, malformed key (checksum fails)",
      target: "keyward",
      path: VERIFY_PATH,
      headers: grpc,
      body: verifyBody(keys.malformed, keys.scopes),
      http1: false,
      expected: "VERIFY_CODE_NOT_FOUND",
      checkAnswer: verifyAnswer(VerifyCode.NOT_FOUND),
      probe: verifyProbe(verifyBody(keys.malformed, keys.scopes), false),
    }),
  ];
}

export interface RunOptions {
  baseUrl: string;
  requests: number;
  clients: number;
  streams: number;
  cpus?: string;
  logFile: string;
  /** Checks valid answers through the key's usage count; without it only counts and bytes are checked (workers: each has its own count). */
  admin?: AdminClient;
  /** The server's pid: its CPU use during the run is reported (1.0 = one core busy throughout). */
  serverPid?: number;
  /** Counts keyward's SQL statements around the h2load run alone (not the probe or usage reads). */
  counter?: { counts(): StatementCounts };
}

export interface ScenarioRun {
  scenario: ScenarioId;
  answer: string;
  result: H2loadResult;
  /** Server CPU seconds per second of the run (its process and workers), when serverPid was given. */
  serverCpu?: number;
  /** Busy share of the load generator's CPU(s) during the run, when they were pinned: near 1, the client set the pace. */
  loadCpu?: number;
  /** keyward's SQL statements during the h2load run, when a counter was given. */
  counts?: StatementCounts;
  /** Empty when every check passed. */
  problems: string[];
}

/** The usage count must grow by exactly `n`; re-read once in case a usage flush was committing meanwhile. */
async function usageProblem(admin: AdminClient, id: string, before: number, n: number): Promise<string | undefined> {
  for (let attempt = 0; attempt < 3; attempt++) {
    const grew = (await admin.requestCount(id)) - before;
    if (grew === n) return undefined;
    if (attempt === 2) return `usage count grew by ${grew}, not ${n}: not every answer was VALID/allowed`;
    await new Promise((r) => setTimeout(r, 300));
  }
  return undefined;
}

/** Probes, runs h2load, and checks the run. Never throws for a wrong answer: it is reported in problems. */
export async function runScenario(scenario: Scenario, options: RunOptions): Promise<ScenarioRun> {
  const { answer, bytesEach } = await scenario.probe(options.baseUrl);
  const problems: string[] = [];
  if (answer !== scenario.expected) problems.push(`probe answered ${answer}, expected ${scenario.expected}`);
  const usageKeyId = options.admin ? scenario.usageKeyId : undefined;
  const before = usageKeyId ? await options.admin!.requestCount(usageKeyId) : 0;
  const start = options.counter?.counts();
  const cpuBefore = options.serverPid ? cpuSeconds(options.serverPid) : 0;
  const loadBefore = options.cpus ? cpuBusySeconds(options.cpus) : 0;
  const wallBefore = performance.now();
  const result = await runH2load({
    url: `${options.baseUrl}${scenario.path}`,
    bodyFile: scenario.bodyFile,
    headers: scenario.headers,
    clients: options.clients,
    streams: options.streams,
    requests: options.requests,
    http1: scenario.http1,
    cpus: options.cpus,
    logFile: options.logFile,
  });
  const serverCpu = options.serverPid ? (cpuSeconds(options.serverPid) - cpuBefore) / result.elapsedSeconds : undefined;
  // Over the wall time around h2load (its start and connections included), not h2load's own timing.
  const loadCpu = options.cpus ? (cpuBusySeconds(options.cpus) - loadBefore) / ((performance.now() - wallBefore) / 1000) / options.cpus.split(",").length : undefined;
  const counts = start && options.counter ? countsBetween(start, options.counter.counts()) : undefined;
  problems.push(...h2loadProblems(result, bytesEach));
  if (usageKeyId) {
    const problem = await usageProblem(options.admin!, usageKeyId, before, result.requests);
    if (problem) problems.push(problem);
  }
  return { scenario: scenario.id, answer, result, serverCpu, loadCpu, counts, problems };
}
