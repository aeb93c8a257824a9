// Connect, gRPC-Web and gRPC calls to connect-node's router, served straight
// off keyward's HTTP/2 streams: the router's universal handlers take a
// request of headers, a body stream and an abort signal, and return status,
// headers, a body stream and trailers, which is what an HTTP/2 stream is.
// Skipping node:http2 (and the bridge's in-memory session) takes ~60 µs off
// each such call. Requests for other paths still go through the bridge.
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import type { UniversalHandler, UniversalServerRequest, UniversalServerResponse } from "@connectrpc/connect/protocol";
import { encodeGrpcMessage } from "../grpc-unary.js";
import { H2Code, headerBlock, type H2Stream, type RequestHeaders } from "./connection.js";

export interface H2ConnectHandler {
  /** True when the router has a method at this request's path. */
  accepts(headers: RequestHeaders): boolean;
  serve(stream: H2Stream): void;
}

export interface H2ConnectHandlerOptions {
  router: ConnectRouter;
  /** A handler failed outside the RPC's own error handling (logged; the stream is reset). */
  onError?: (error: unknown) => void;
}

// Answer bytes queued for the client before the handler's body is read further.
const QUEUE_HIGH_WATER = 64 * 1024;
const EMPTY = Buffer.alloc(0);

/** As connect-node maps a peer's RST_STREAM code (node-error.ts). */
function resetError(code: number): ConnectError | undefined {
  const message = `http/2 stream closed with error code 0x${code.toString(16)}`;
  switch (code) {
    case H2Code.CANCEL:
      return new ConnectError(message, Code.Canceled);
    case H2Code.REFUSED_STREAM:
      return new ConnectError(message, Code.Unavailable);
    case H2Code.ENHANCE_YOUR_CALM:
      return new ConnectError(message, Code.ResourceExhausted);
    case H2Code.NO_ERROR:
    case H2Code.STREAM_CLOSED:
      return undefined;
    default:
      return new ConnectError(message, Code.Internal);
  }
}

/** The request body as the handler reads it; the stream's window is given back as chunks are taken. */
class RequestBody implements AsyncIterable<Uint8Array> {
  private chunks: Buffer[] = [];
  private ended = false;
  private error: ConnectError | undefined = undefined;
  private wake: (() => void) | undefined = undefined;

  constructor(private readonly stream: H2Stream) {}

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.wake?.();
  }

  end(): void {
    this.ended = true;
    this.wake?.();
  }

  fail(error: ConnectError): void {
    this.error = error;
    this.wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    for (;;) {
      const chunk = this.chunks.shift();
      if (chunk !== undefined) {
        this.stream.release(chunk.length);
        yield chunk;
        continue;
      }
      if (this.error !== undefined) throw this.error;
      if (this.ended) return;
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = undefined;
    }
  }
}

function fieldsOf(headers: Headers | undefined, grpc: boolean): Record<string, string> {
  const out: Record<string, string> = {};
  headers?.forEach((value, name) => {
    // grpc-message as gRPC asks (connect-node percent-encodes more; grpc-js would not decode it all).
    out[name] = grpc && name === "grpc-message" ? encodeGrpcMessage(safeDecode(value)) : value;
  });
  return out;
}

function safeDecode(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

export function createH2ConnectHandler(options: H2ConnectHandlerOptions): H2ConnectHandler {
  const paths = new Map<string, UniversalHandler>();
  for (const handler of options.router.handlers) paths.set(handler.requestPath, handler);
  const pathOf = (headers: RequestHeaders) => {
    const path = headers[":path"] ?? "";
    const q = path.indexOf("?");
    return q === -1 ? path : path.slice(0, q);
  };

  async function respond(stream: H2Stream, res: UniversalServerResponse, grpc: boolean): Promise<void> {
    const it = res.body?.[Symbol.asyncIterator]();
    try {
      // The first chunk before the headers, as connect-node does: a handler may still set headers.
      let chunk = it ? await it.next() : ({ done: true, value: undefined } as IteratorResult<Uint8Array>);
      if (stream.closed) return;
      const endNow = chunk.done === true && res.trailer === undefined;
      stream.sendHeaders(headerBlock({ ":status": res.status, ...fieldsOf(res.header, grpc) }), endNow);
      while (chunk.done !== true) {
        const bytes = chunk.value;
        stream.sendData(Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), false);
        if (stream.queuedBytes > QUEUE_HIGH_WATER) await new Promise<void>((resolve) => (stream.ondrain = resolve));
        if (stream.closed) return;
        chunk = await it!.next();
      }
      if (res.trailer !== undefined) stream.sendHeaders(headerBlock(fieldsOf(res.trailer, grpc)), true);
      else if (!endNow) stream.sendData(EMPTY, true);
    } finally {
      await it?.return?.().catch(() => {});
    }
  }

  return {
    accepts(headers) {
      return paths.has(pathOf(headers));
    },
    serve(stream) {
      const handler = paths.get(pathOf(stream.headers))!;
      const h = stream.headers;
      const body = new RequestBody(stream);
      const abort = new AbortController();
      let request: UniversalServerRequest;
      try {
        const header = new Headers();
        for (const name in h) if (name.charCodeAt(0) !== 0x3a) header.append(name, h[name]!);
        const authority = h[":authority"] ?? h.host ?? "localhost";
        request = {
          httpVersion: "2.0",
          method: h[":method"]!,
          url: new URL(h[":path"]!, `${h[":scheme"] === "https" ? "https" : "http"}://${authority}`).toString(),
          header,
          body,
          signal: abort.signal,
        };
      } catch {
        // A field the fetch API's Headers refuses, or an authority no URL takes.
        stream.reset(H2Code.PROTOCOL_ERROR);
        return;
      }
      stream.ondata = (chunk) => body.push(chunk);
      stream.onend = () => body.end();
      stream.onclose = (code) => {
        const error = resetError(code) ?? new ConnectError("the client closed the stream", Code.Canceled);
        body.fail(error);
        abort.abort(error);
        // A handler waiting for room to write stops waiting.
        stream.ondrain?.();
      };
      const grpc = (h["content-type"] ?? "").startsWith("application/grpc") && !(h["content-type"] ?? "").startsWith("application/grpc-web");
      handler(request)
        .then((res) => respond(stream, res, grpc))
        .then(
          () => abort.abort(),
          (reason: unknown) => {
            abort.abort();
            if (!stream.closed) stream.reset(H2Code.INTERNAL_ERROR);
            if (ConnectError.from(reason).code !== Code.Aborted && ConnectError.from(reason).code !== Code.Canceled) options.onError?.(reason);
          },
        );
    },
  };
}
