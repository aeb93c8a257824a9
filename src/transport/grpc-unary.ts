// A lean gRPC unary path for the hot RPCs (Verify; later Check and health),
// served straight off node:http2 streams. The generic Connect handler costs
// ~85% of the transport's ceiling on this path (see the performance issue), so
// these few methods are framed here while every other call, and every other
// protocol, goes to connect-node. Protocol duties kept: framing, size limits,
// grpc-encoding (identity/gzip/deflate), grpc-timeout deadlines, status and
// message trailers, trailers-only errors.
import type { IncomingHttpHeaders, ServerHttp2Stream } from "node:http2";
import { gunzip, inflate } from "node:zlib";
import { Code, ConnectError } from "@connectrpc/connect";
import { toConnectError } from "./errors.js";

export interface UnaryMethod<Req = unknown, Res = unknown> {
  /** "/package.Service/Method" */
  path: string;
  /** Parses the request message; throws a KeywardError (INVALID_ARGUMENT) on bad input. */
  decode(payload: Uint8Array): Req;
  handle(request: Req, headers: IncomingHttpHeaders): Res | Promise<Res>;
  encode(response: Res): Uint8Array;
  /** Optional: the gRPC frame (5-byte prefix + message) in one buffer, saving a copy. */
  encodeFrame?(response: Res): Buffer;
}

/** Erases a method's message types for the handler table. */
export function lean<Req, Res>(method: UnaryMethod<Req, Res>): UnaryMethod {
  return method as unknown as UnaryMethod;
}

export interface GrpcUnaryOptions {
  methods: UnaryMethod[];
  /** Largest request message accepted, after decompression. */
  maxMessageBytes: number;
  /** Called with every error turned into a status, for logging. */
  onError?: (error: ConnectError, path: string) => void;
  /** Called once per finished call with its gRPC status code and duration (metrics). */
  onCall?: (path: string, code: number, seconds: number) => void;
}

export interface GrpcUnaryHandler {
  /** True when this stream is a gRPC (protobuf) call to one of the lean methods. */
  accepts(headers: IncomingHttpHeaders): boolean;
  serve(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void;
}

const ACCEPT_ENCODING = "identity,deflate,gzip";
const TIMEOUT_RE = /^(\d{1,8})([HMSmun])$/;
const TIMEOUT_UNIT_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 1e-3, n: 1e-6 };
// grpc-accept-encoding is advertised on errors (where a client may need it), not
// on every answer: one header less to encode per call.
const RESPONSE_HEADERS = { ":status": 200, "content-type": "application/grpc" };
const ERROR_HEADERS = { ...RESPONSE_HEADERS, "grpc-accept-encoding": ACCEPT_ENCODING };
const OK_TRAILERS = { "grpc-status": "0" };
// Shared listener: no closure per call on the hot path.
function sendOkTrailers(this: ServerHttp2Stream): void {
  this.sendTrailers(OK_TRAILERS);
}

export function isGrpcProtoContentType(contentType: string | undefined): boolean {
  if (contentType === "application/grpc" || contentType === "application/grpc+proto") return true;
  if (contentType === undefined) return false;
  const semi = contentType.indexOf(";");
  const base = (semi === -1 ? contentType : contentType.slice(0, semi)).trim().toLowerCase();
  return base === "application/grpc" || base === "application/grpc+proto";
}

/** grpc-message is percent-encoded: bytes outside 0x20-0x7E, and '%'. */
export function encodeGrpcMessage(message: string): string {
  return /^[\x20-\x24\x26-\x7e]*$/.test(message)
    ? message
    : Buffer.from(message, "utf8").reduce(
        (out, b) => out + (b >= 0x20 && b <= 0x7e && b !== 0x25 ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, "0")}`),
        "",
      );
}

export function parseGrpcTimeout(value: string | string[] | undefined): number | undefined | null {
  if (value === undefined) return undefined;
  const m = typeof value === "string" ? TIMEOUT_RE.exec(value) : null;
  if (!m) return null;
  return Number(m[1]) * TIMEOUT_UNIT_MS[m[2]!]!;
}

/** A gRPC length-prefixed message (uncompressed). */
export function frame(payload: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(5 + payload.length);
  out[0] = 0;
  out.writeUInt32BE(payload.length, 1);
  out.set(payload, 5);
  return out;
}

// Per-call state lives on the stream and the listeners are shared functions,
// so a call allocates one object instead of a closure per event. It is taken
// off the stream once the body is in: whatever hangs off a finished stream
// lives as long as the stream does, which can be until a full GC (see
// releaseListeners in server.ts).
const kCall = Symbol("keyward.unaryCall");
const kStart = Symbol("keyward.unaryStart");
interface CallState {
  method: UnaryMethod;
  headers: IncomingHttpHeaders;
  first: Buffer | undefined;
  chunks: Buffer[] | undefined;
  total: number;
  failed: boolean;
  maxBytes: number;
  onBody: (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, method: UnaryMethod, body: Buffer) => void;
  onTooBig: (stream: ServerHttp2Stream, method: UnaryMethod) => void;
}
type CallStream = ServerHttp2Stream & { [kCall]: CallState | undefined; [kStart]: number };

function ignore(): void {}

function onCallData(this: CallStream, chunk: Buffer): void {
  const call = this[kCall];
  if (call === undefined || call.failed) return;
  call.total += chunk.length;
  if (call.total > call.maxBytes + 5) {
    call.failed = true;
    call.onTooBig(this, call.method);
    return;
  }
  if (call.first === undefined) call.first = chunk;
  else (call.chunks ??= [call.first]).push(chunk);
}

function onCallEnd(this: CallStream): void {
  const call = this[kCall];
  this[kCall] = undefined;
  if (call === undefined || call.failed) return;
  const body = call.chunks ? Buffer.concat(call.chunks, call.total) : (call.first ?? Buffer.alloc(0));
  call.onBody(this, call.headers, call.method, body);
}

export function createGrpcUnaryHandler(options: GrpcUnaryOptions): GrpcUnaryHandler {
  const methods = new Map(options.methods.map((m) => [m.path, m]));
  const maxBytes = options.maxMessageBytes;

  const onCall = options.onCall;
  const finished = (stream: ServerHttp2Stream, path: string, code: number) =>
    onCall?.(path, code, (performance.now() - (stream as CallStream)[kStart]) / 1000);

  function sendError(stream: ServerHttp2Stream, error: ConnectError, path: string): void {
    options.onError?.(error, path);
    finished(stream, path, error.code);
    if (stream.destroyed || stream.closed) return;
    const trailers = { "grpc-status": String(error.code), "grpc-message": encodeGrpcMessage(error.rawMessage) };
    if (!stream.headersSent) {
      // Trailers-only response.
      stream.respond({ ...ERROR_HEADERS, ...trailers }, { endStream: true });
    } else if (!stream.writableEnded) {
      stream.end();
    }
  }

  function sendMessage(stream: ServerHttp2Stream, method: UnaryMethod, response: unknown): void {
    if (stream.destroyed || stream.closed) return;
    let body: Buffer;
    try {
      body = method.encodeFrame ? method.encodeFrame(response) : frame(method.encode(response));
    } catch (error) {
      sendError(stream, toConnectError(error), method.path);
      return;
    }
    stream.respond(RESPONSE_HEADERS, { waitForTrailers: true });
    // `on`, not `once`: the event fires once per stream, and once() allocates a wrapper per call.
    stream.on("wantTrailers", sendOkTrailers);
    stream.end(body);
    finished(stream, method.path, 0);
  }

  function run(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, method: UnaryMethod, payload: Uint8Array): void {
    let result: unknown;
    try {
      result = method.handle(method.decode(payload), headers);
    } catch (error) {
      sendError(stream, toConnectError(error), method.path);
      return;
    }
    if (!(result instanceof Promise)) {
      sendMessage(stream, method, result);
      return;
    }
    const timeout = parseGrpcTimeout(headers["grpc-timeout"]);
    let timer: NodeJS.Timeout | undefined;
    let settled = false;
    if (typeof timeout === "number") {
      timer = setTimeout(() => {
        if (settled) return;
        settled = true;
        sendError(stream, new ConnectError("deadline exceeded", Code.DeadlineExceeded), method.path);
      }, Math.max(0, timeout));
    }
    result.then(
      (response) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        sendMessage(stream, method, response);
      },
      (error: unknown) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        sendError(stream, toConnectError(error), method.path);
      },
    );
  }

  function onBody(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, method: UnaryMethod, body: Buffer): void {
    if (body.length < 5) {
      sendError(stream, new ConnectError(body.length === 0 ? "missing request message" : "truncated message frame", Code.InvalidArgument), method.path);
      return;
    }
    const compressed = body[0]! & 1;
    const length = body.readUInt32BE(1);
    if (body.length < 5 + length) {
      sendError(stream, new ConnectError("truncated message frame", Code.InvalidArgument), method.path);
      return;
    }
    if (body.length > 5 + length) {
      sendError(stream, new ConnectError("unary call received more than one request message", Code.InvalidArgument), method.path);
      return;
    }
    const payload = body.subarray(5);
    if (!compressed) {
      run(stream, headers, method, payload);
      return;
    }
    const encoding = headers["grpc-encoding"];
    if (encoding === undefined || encoding === "identity") {
      sendError(stream, new ConnectError("compressed message without grpc-encoding", Code.Internal), method.path);
      return;
    }
    const inflateFn = encoding === "gzip" ? gunzip : inflate;
    inflateFn(payload, { maxOutputLength: maxBytes }, (error, plain) => {
      if (error) {
        const tooBig = (error as NodeJS.ErrnoException).code === "ERR_BUFFER_TOO_LARGE";
        sendError(
          stream,
          tooBig
            ? new ConnectError(`request message exceeds ${maxBytes} bytes`, Code.ResourceExhausted)
            : new ConnectError(`request message is not valid ${encoding}`, Code.InvalidArgument),
          method.path,
        );
        return;
      }
      run(stream, headers, method, plain);
    });
  }

  function onTooBig(stream: ServerHttp2Stream, method: UnaryMethod): void {
    sendError(stream, new ConnectError(`request message exceeds ${maxBytes} bytes`, Code.ResourceExhausted), method.path);
    // Stop receiving the rest of an oversized body.
    stream.close();
  }

  return {
    accepts(headers) {
      return headers[":method"] === "POST" && methods.has(headers[":path"] ?? "") && isGrpcProtoContentType(headers["content-type"]);
    },
    serve(stream, headers) {
      const method = methods.get(headers[":path"]!)!;
      if (onCall) (stream as CallStream)[kStart] = performance.now();
      // A client reset must never become an uncaught error.
      stream.on("error", ignore);
      const encoding = headers["grpc-encoding"];
      if (encoding !== undefined && encoding !== "identity" && encoding !== "gzip" && encoding !== "deflate") {
        finished(stream, method.path, Code.Unimplemented);
        if (!stream.headersSent) {
          stream.respond(
            {
              ...ERROR_HEADERS,
              "grpc-status": String(Code.Unimplemented),
              "grpc-message": encodeGrpcMessage(`unsupported grpc-encoding "${String(encoding)}"; supported: ${ACCEPT_ENCODING}`),
            },
            { endStream: true },
          );
        }
        return;
      }
      if (parseGrpcTimeout(headers["grpc-timeout"]) === null) {
        sendError(stream, new ConnectError("invalid grpc-timeout header", Code.InvalidArgument), method.path);
        return;
      }
      const call: CallState = { method, headers, first: undefined, chunks: undefined, total: 0, failed: false, maxBytes, onBody, onTooBig };
      (stream as CallStream)[kCall] = call;
      stream.on("data", onCallData);
      stream.on("end", onCallEnd);
    },
  };
}
