// A small load generator over node:http2, for what h2load cannot do: send a
// different body on every request (h2load posts one file), read every answer's
// trailers and body, and hold a low steady open-loop rate (h2load's --rps
// sends 100 ms bursts). It is JavaScript on one core: past a few thousand
// requests/s its own queueing shows in the latencies, so the bench uses it
// open-loop only for a 250/s probe. Slower than h2load (it is
// JavaScript, one core), so its rows measure keyward plus this client; the
// bench runs it against a Verify cache hit too, to give those rows a fair
// reference.
import { connect, constants, type ClientHttp2Session, type IncomingHttpHeaders } from "node:http2";
import { performance } from "node:perf_hooks";
import { percentiles, type Percentiles } from "./stats.js";

export interface Answer {
  status: number;
  /** grpc-status from the trailers (or a trailers-only response); undefined when absent. */
  grpcStatus: string | undefined;
  body: Buffer;
}

export interface Http2LoadOptions {
  baseUrl: string;
  path: string;
  headers: Record<string, string>;
  /** Request bodies, sent round-robin: request i carries bodies[i % length]. */
  bodies: readonly Buffer[];
  /** First body index, so consecutive runs can walk one list without reuse. */
  offset?: number;
  requests: number;
  connections: number;
  /** Streams in flight per connection (closed loop; ignored with `rate`). */
  streams: number;
  /**
   * Open loop: request i is due at start + i / rate, sent round-robin over the
   * connections whatever the answers, and its latency is counted from when it
   * was due (so a late send counts against the result, not for it).
   */
  rate?: number;
  /** Returns undefined when the answer to bodies[index] is right, else what is wrong. */
  check: (answer: Answer, index: number) => string | undefined;
}

export interface Http2LoadResult {
  requests: number;
  /** Answers that passed check. */
  ok: number;
  /** Problem → how many answers had it. */
  problems: Record<string, number>;
  elapsedSeconds: number;
  rps: number;
  latencyUs: Percentiles;
}

function open(baseUrl: string): Promise<ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const session = connect(baseUrl);
    session.once("connect", () => resolve(session));
    session.once("error", reject);
  });
}

export async function runHttp2Load(options: Http2LoadOptions): Promise<Http2LoadResult> {
  const sessions = await Promise.all(Array.from({ length: options.connections }, () => open(options.baseUrl)));
  const total = options.requests;
  const offset = options.offset ?? 0;
  const latencies = new Float64Array(total);
  const problems: Record<string, number> = {};
  let ok = 0;
  let next = 0;
  let finished = 0;
  const requestHeaders = { [constants.HTTP2_HEADER_METHOD]: "POST", [constants.HTTP2_HEADER_PATH]: options.path, ...options.headers };
  const started = performance.now();

  await new Promise<void>((resolve) => {
    const send = (session: ClientHttp2Session, i: number, t0: number, after: () => void): void => {
      const index = (offset + i) % options.bodies.length;
      let status = 0;
      let grpcStatus: string | undefined;
      const chunks: Buffer[] = [];
      let t1 = 0;
      let error: string | undefined;
      const stream = session.request(requestHeaders);
      stream.on("response", (headers: IncomingHttpHeaders) => {
        status = Number(headers[":status"]);
        if (headers["grpc-status"] !== undefined) grpcStatus = String(headers["grpc-status"]);
      });
      stream.on("trailers", (trailers: IncomingHttpHeaders) => {
        if (trailers["grpc-status"] !== undefined) grpcStatus = String(trailers["grpc-status"]);
      });
      stream.on("data", (chunk: Buffer) => chunks.push(chunk));
      stream.on("end", () => (t1 = performance.now()));
      stream.on("error", (e: Error) => (error = `stream error: ${e.message}`));
      stream.on("close", () => {
        latencies[i] = ((t1 || performance.now()) - t0) * 1000;
        const problem = error ?? options.check({ status, grpcStatus, body: Buffer.concat(chunks) }, index);
        if (problem === undefined) ok++;
        else problems[problem] = (problems[problem] ?? 0) + 1;
        if (++finished === total) resolve();
        else after();
      });
      stream.end(options.bodies[index]);
    };

    if (options.rate === undefined) {
      // Closed loop: each finished request starts the next on its connection.
      const issue = (session: ClientHttp2Session): void => {
        if (next >= total) return;
        send(session, next++, performance.now(), () => issue(session));
      };
      for (const session of sessions) for (let s = 0; s < options.streams; s++) issue(session);
      return;
    }
    // Open loop: a setImmediate loop (sub-millisecond, unlike timers) sends whatever is due.
    const gapMs = 1000 / options.rate;
    const tick = () => {
      const now = performance.now();
      while (next < total && started + next * gapMs <= now) {
        const i = next++;
        send(sessions[i % sessions.length]!, i, started + i * gapMs, () => {});
      }
      if (next < total) setImmediate(tick);
    };
    setImmediate(tick);
  });

  const elapsedSeconds = (performance.now() - started) / 1000;
  await Promise.all(sessions.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  return { requests: total, ok, problems, elapsedSeconds, rps: total / elapsedSeconds, latencyUs: percentiles(latencies) };
}

/** A check for gRPC answers: HTTP 200, grpc-status 0, exactly one message whose payload `verify` accepts. */
export function grpcAnswer(verify: (payload: Buffer, index: number) => string | undefined): Http2LoadOptions["check"] {
  return (answer, index) => {
    if (answer.status !== 200) return `HTTP ${answer.status}`;
    if (answer.grpcStatus !== "0") return `grpc-status ${answer.grpcStatus ?? "missing"}`;
    const body = answer.body;
    if (body.length < 5 || body[0] !== 0 || body.readUInt32BE(1) !== body.length - 5) return "not one uncompressed gRPC message";
    return verify(body.subarray(5), index);
  };
}
