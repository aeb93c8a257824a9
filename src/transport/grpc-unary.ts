// A lean gRPC unary path for the hot RPCs (Verify, Check, health Check),
// served straight off keyward's own HTTP/2 streams (h2/connection.ts). The
// generic Connect handler costs ~85% of the transport's ceiling on this path
// (see the performance issue), so these few methods are framed here while
// every other call, and every other protocol, goes to connect-node. Protocol duties kept: framing, size limits,
// grpc-encoding (identity/gzip/deflate), grpc-timeout deadlines, status and
// message trailers, trailers-only errors.
import { gunzip, inflate } from "node:zlib";
import { Code, ConnectError } from "@connectrpc/connect";
import { toConnectError } from "./errors.js";
import { H2Code, headerBlock, type H2Stream, type RequestHeaders } from "./h2/connection.js";

export interface UnaryMethod<Req = unknown, Res = unknown> {
  /** "/package.Service/Method" */
  path: string;
  /** Parses the request message; throws a KeywardError (INVALID_ARGUMENT) on bad input. */
  decode(payload: Uint8Array): Req;
  handle(request: Req, headers: RequestHeaders): Res | Promise<Res>;
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
  accepts(headers: RequestHeaders): boolean;
  serve(stream: H2Stream): void;
}

const ACCEPT_ENCODING = "identity,deflate,gzip";
const TIMEOUT_RE = /^(\d{1,8})([HMSmun])$/;
const TIMEOUT_UNIT_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 1e-3, n: 1e-6 };
// grpc-accept-encoding is advertised on errors (where a client may need it), not
// on every answer. The answer's header blocks never change: encoded once.
const RESPONSE_HEADERS = { ":status": 200, "content-type": "application/grpc" };
const ERROR_HEADERS = { ...RESPONSE_HEADERS, "grpc-accept-encoding": ACCEPT_ENCODING };
const RESPONSE_BLOCK = headerBlock(RESPONSE_HEADERS);
const OK_TRAILERS_BLOCK = headerBlock({ "grpc-status": "0" });

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

export function parseGrpcTimeout(value: string | undefined): number | undefined | null {
  if (value === undefined) return undefined;
  const m = TIMEOUT_RE.exec(value);
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

// Per-call state; the stream's callbacks are shared functions.
interface CallState {
  method: UnaryMethod;
  first: Buffer | undefined;
  chunks: Buffer[] | undefined;
  total: number;
  failed: boolean;
  maxBytes: number;
  onBody: (stream: H2Stream, method: UnaryMethod, body: Buffer) => void;
  onTooBig: (stream: H2Stream, method: UnaryMethod) => void;
  onBusy: (stream: H2Stream, method: UnaryMethod) => void;
}

function onCallData(this: H2Stream, chunk: Buffer): void {
  const call = this.context as CallState | undefined;
  if (call === undefined || call.failed) return;
  // The body is bounded by maxBytes below and by what the connection may
  // hold, so the window is given back at once.
  if (call.total + chunk.length > call.maxBytes + 5) {
    call.failed = true;
    this.connection.releaseBody(call.total);
    call.onTooBig(this, call.method);
    return;
  }
  if (!this.connection.holdBody(chunk.length)) {
    call.failed = true;
    this.connection.releaseBody(call.total);
    call.onBusy(this, call.method);
    return;
  }
  this.release(chunk.length);
  call.total += chunk.length;
  if (call.first === undefined) call.first = chunk;
  else (call.chunks ??= [call.first]).push(chunk);
}

function onCallEnd(this: H2Stream): void {
  const call = this.context as CallState | undefined;
  this.context = undefined;
  if (call === undefined || call.failed) return;
  this.connection.releaseBody(call.total);
  const body = call.chunks ? Buffer.concat(call.chunks, call.total) : (call.first ?? Buffer.alloc(0));
  call.onBody(this, call.method, body);
}

// A cancelled call's partial body is dropped with it.
function onCallClose(this: H2Stream): void {
  const call = this.context as CallState | undefined;
  this.context = undefined;
  if (call !== undefined && !call.failed) this.connection.releaseBody(call.total);
}

export function createGrpcUnaryHandler(options: GrpcUnaryOptions): GrpcUnaryHandler {
  const methods = new Map(options.methods.map((m) => [m.path, m]));
  const maxBytes = options.maxMessageBytes;

  const onCall = options.onCall;
  const finished = (stream: H2Stream, path: string, code: number) => onCall?.(path, code, (performance.now() - stream.startedAt) / 1000);

  function sendStatus(stream: H2Stream, code: number, message: string): void {
    if (stream.closed) return;
    // Trailers-only response; a client still sending is told to stop.
    stream.sendHeaders(headerBlock({ ...ERROR_HEADERS, "grpc-status": String(code), "grpc-message": encodeGrpcMessage(message) }), true);
    if (!stream.remoteClosed) stream.reset(H2Code.NO_ERROR);
  }

  function sendError(stream: H2Stream, error: ConnectError, path: string): void {
    options.onError?.(error, path);
    finished(stream, path, error.code);
    sendStatus(stream, error.code, error.rawMessage);
  }

  function sendMessage(stream: H2Stream, method: UnaryMethod, response: unknown): void {
    if (stream.closed) return;
    let body: Buffer;
    try {
      body = method.encodeFrame ? method.encodeFrame(response) : frame(method.encode(response));
    } catch (error) {
      sendError(stream, toConnectError(error), method.path);
      return;
    }
    stream.respond(RESPONSE_BLOCK, body, OK_TRAILERS_BLOCK);
    finished(stream, method.path, 0);
  }

  function run(stream: H2Stream, method: UnaryMethod, payload: Uint8Array): void {
    let result: unknown;
    try {
      result = method.handle(method.decode(payload), stream.headers);
    } catch (error) {
      sendError(stream, toConnectError(error), method.path);
      return;
    }
    if (!(result instanceof Promise)) {
      sendMessage(stream, method, result);
      return;
    }
    const timeout = parseGrpcTimeout(stream.headers["grpc-timeout"]);
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

  function onBody(stream: H2Stream, method: UnaryMethod, body: Buffer): void {
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
      run(stream, method, payload);
      return;
    }
    const encoding = stream.headers["grpc-encoding"];
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
      run(stream, method, plain);
    });
  }

  function onTooBig(stream: H2Stream, method: UnaryMethod): void {
    // The error's RST_STREAM stops the rest of the body.
    sendError(stream, new ConnectError(`request message exceeds ${maxBytes} bytes`, Code.ResourceExhausted), method.path);
  }

  function onBusy(stream: H2Stream, method: UnaryMethod): void {
    sendError(stream, new ConnectError("too many request bytes in flight on this connection", Code.ResourceExhausted), method.path);
  }

  return {
    accepts(headers) {
      return headers[":method"] === "POST" && methods.has(headers[":path"] ?? "") && isGrpcProtoContentType(headers["content-type"]);
    },
    serve(stream) {
      const method = methods.get(stream.headers[":path"]!)!;
      const encoding = stream.headers["grpc-encoding"];
      if (encoding !== undefined && encoding !== "identity" && encoding !== "gzip" && encoding !== "deflate") {
        finished(stream, method.path, Code.Unimplemented);
        sendStatus(stream, Code.Unimplemented, `unsupported grpc-encoding "${encoding}"; supported: ${ACCEPT_ENCODING}`);
        return;
      }
      if (parseGrpcTimeout(stream.headers["grpc-timeout"]) === null) {
        sendError(stream, new ConnectError("invalid grpc-timeout header", Code.InvalidArgument), method.path);
        return;
      }
      const call: CallState = { method, first: undefined, chunks: undefined, total: 0, failed: false, maxBytes, onBody, onTooBig, onBusy };
      stream.context = call;
      stream.ondata = onCallData;
      stream.onend = onCallEnd;
      stream.onclose = onCallClose;
    },
  };
}
