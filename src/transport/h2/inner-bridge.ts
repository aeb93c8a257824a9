// Streams keyward's HTTP/2 connection does not answer itself go on to a
// node:http2 server in the same process, which hands them to connect-node and
// the plain HTTP routes as before. Each client connection gets, on its first
// such stream, one in-memory HTTP/2 session into that server (a duplex pair,
// no socket); the bridge copies headers, body, answer and trailers between the
// two, with flow control on both sides and resets passed through.
import { connect, constants, type ClientHttp2Session, type ClientHttp2Stream, type Http2Server, type IncomingHttpHeaders } from "node:http2";
import { duplexPair } from "node:stream";
import { H2Code, headerBlock, type H2Stream } from "./connection.js";

// Answer bytes queued for the client before the inner stream is paused.
const QUEUE_HIGH_WATER = 64 * 1024;
const EMPTY = Buffer.alloc(0);

export interface InnerBridge {
  /** Passes the stream on; call once its header block is in. */
  forward(stream: H2Stream): void;
  /** Ends the inner session (the client connection is gone). */
  close(): void;
}

/** node:http2's header object as fields for headerBlock (pseudo-headers and symbols left out). */
function fieldsOf(headers: IncomingHttpHeaders): Record<string, string | readonly string[]> {
  const out: Record<string, string | readonly string[]> = {};
  for (const [name, value] of Object.entries(headers)) if (value !== undefined && name.charCodeAt(0) !== 0x3a) out[name] = value;
  return out;
}

export function createInnerBridge(server: Http2Server): InnerBridge {
  let session: ClientHttp2Session | undefined;
  const open = () => {
    const [inner, outer] = duplexPair();
    server.emit("connection", inner);
    const s = connect("http://keyward.internal", { createConnection: () => outer, maxSessionMemory: 64, peerMaxConcurrentStreams: 1000 });
    s.on("error", () => {});
    s.on("close", () => {
      if (session === s) session = undefined;
    });
    return s;
  };

  return {
    forward(stream) {
      session ??= open();
      const request = Object.create(null) as Record<string, string>;
      for (const name in stream.headers) request[name] = stream.headers[name]!;
      let inner: ClientHttp2Stream;
      try {
        inner = session.request(request, { endStream: stream.remoteClosed });
      } catch {
        // node:http2 refused the fields (it checks more than HTTP/2 requires).
        stream.reset(H2Code.PROTOCOL_ERROR);
        return;
      }
      let ended = false;
      // node:http2 can emit a stream's first 'data' before its 'response'
      // when both arrive in one read; DATA must not precede HEADERS, so what
      // comes before the answer's headers waits for them.
      let early: (() => void)[] | undefined = [];
      const inOrder = (send: () => void) => (early === undefined ? send() : early.push(send));
      stream.ondata = (chunk) => {
        inner.write(chunk, () => stream.release(chunk.length));
      };
      stream.onend = () => {
        if (!inner.writableEnded) inner.end();
      };
      stream.onclose = () => {
        if (!inner.closed) inner.close(constants.NGHTTP2_CANCEL);
      };
      stream.ondrain = () => inner.resume();
      inner.on("response", (headers, flags) => {
        const endStream = (flags & constants.NGHTTP2_FLAG_END_STREAM) !== 0;
        if (endStream) ended = true;
        // :status first: pseudo-header fields precede the others.
        stream.sendHeaders(headerBlock({ ":status": headers[":status"] ?? 200, ...fieldsOf(headers) }), endStream);
        const waiting = early!;
        early = undefined;
        for (const send of waiting) send();
      });
      inner.on("data", (chunk: Buffer) => {
        inOrder(() => stream.sendData(chunk, false));
        if (stream.queuedBytes > QUEUE_HIGH_WATER) inner.pause();
      });
      inner.on("trailers", (trailers: IncomingHttpHeaders) => {
        ended = true;
        const fields = fieldsOf(trailers);
        inOrder(() => stream.sendHeaders(headerBlock(fields), true));
      });
      inner.on("end", () => {
        if (ended) return;
        ended = true;
        inOrder(() => stream.sendData(EMPTY, true));
      });
      inner.on("error", () => {});
      inner.on("close", () => {
        // Answered in full, the stream is closed (or its end queued) by now.
        // Otherwise it was reset inside, or the session went away, first.
        if (stream.closed) return;
        early = undefined;
        const code = inner.rstCode;
        stream.reset(code === undefined || code === H2Code.NO_ERROR ? H2Code.INTERNAL_ERROR : code);
      });
    },
    close() {
      session?.destroy();
      session = undefined;
    },
  };
}
