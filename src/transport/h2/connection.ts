// keyward's HTTP/2 server connection (RFC 9113), in JS over the socket.
// node:http2 costs ~21 µs of CPU per unary call on this machine before any
// work is done: a Duplex stream, events and several JS⇄C++ crossings per
// call. Here a call is a small object, its frames are parsed straight off the
// socket's buffer, and every answer ready in one read goes out in one write
// (~3 µs per call; bench/README.md). Streams this server does not answer
// itself (management RPCs, Connect, gRPC-Web, reflection, Watch) are passed
// on to node:http2 in-process (inner-bridge.ts).
import type { Socket } from "node:net";
import { encodeHeaderBlock, encodeTableSizeUpdate, HpackDecoder, HpackError, type HeaderSink } from "./hpack.js";

/** RFC 9113 section 7. */
export const H2Code = {
  NO_ERROR: 0x0,
  PROTOCOL_ERROR: 0x1,
  INTERNAL_ERROR: 0x2,
  FLOW_CONTROL_ERROR: 0x3,
  STREAM_CLOSED: 0x5,
  FRAME_SIZE_ERROR: 0x6,
  REFUSED_STREAM: 0x7,
  CANCEL: 0x8,
  COMPRESSION_ERROR: 0x9,
  ENHANCE_YOUR_CALM: 0xb,
} as const;

const DATA = 0x0;
const HEADERS = 0x1;
const PRIORITY = 0x2;
const RST_STREAM = 0x3;
const SETTINGS = 0x4;
const PUSH_PROMISE = 0x5;
const PING = 0x6;
const GOAWAY = 0x7;
const WINDOW_UPDATE = 0x8;
const CONTINUATION = 0x9;

const END_STREAM = 0x1;
const ACK = 0x1;
const END_HEADERS = 0x4;
const PADDED = 0x8;
const PRIORITY_FLAG = 0x20;

const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
const DEFAULT_WINDOW = 65_535;
const MAX_WINDOW = 0x7fffffff;
const FRAME_SIZE = 16_384;
// The connection window we open at once: many concurrent unary requests
// should not wait on connection-level WINDOW_UPDATEs. Each stream keeps the
// default 64 KiB window, which bounds what one stream can buffer here.
const CONNECTION_WINDOW = 1 << 20;
// Stop reading from a client that does not read its answers.
const WRITE_HIGH_WATER = 1 << 20;
// Streams a client may reset before we answer (rapid reset, CVE-2023-44487): a
// token bucket of 1,000 refilled at 33 a second, node:http2's own defaults
// (streamResetBurst, streamResetRate). A fixed window would let a flood
// through whenever a slow server spreads it over two windows.
const PEER_RESET_BURST = 1000;
const PEER_RESET_RATE = 33;

/** Request header fields: lowercase names; repeated fields joined (", ", or "; " for cookie). */
export type RequestHeaders = Record<string, string | undefined>;

const NAME_RE = /^[a-z0-9!#$%&'*+\-.^_`|~]+$/;
const BAD_VALUE_RE = /[\0\r\n]/;
const PSEUDO = new Set([":method", ":scheme", ":authority", ":path"]);
const CONNECTION_SPECIFIC = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"]);

class ConnectionError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

function frameHead(out: Buffer, at: number, length: number, type: number, flags: number, id: number): void {
  out[at] = length >>> 16;
  out[at + 1] = (length >>> 8) & 0xff;
  out[at + 2] = length & 0xff;
  out[at + 3] = type;
  out[at + 4] = flags;
  out.writeUInt32BE(id, at + 5);
}

function frame(type: number, flags: number, id: number, payload: Buffer): Buffer {
  const out = Buffer.allocUnsafe(9 + payload.length);
  frameHead(out, 0, payload.length, type, flags, id);
  payload.copy(out, 9);
  return out;
}

/** Where a PADDED frame's content ends (RFC 9113 6.1): its first byte counts the padding at its end. */
function unpaddedEnd(buf: Buffer, start: number, end: number): number {
  if (end - start < 1 || buf[start]! >= end - start) throw new ConnectionError(H2Code.PROTOCOL_ERROR, "bad padding");
  return end - buf[start]!;
}

function u32(value: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(value);
  return b;
}

type Pending = { headers: Buffer; end: boolean } | { data: Buffer; end: boolean };

/**
 * One request stream. The handler sets the callbacks; they are called with
 * the stream as `this`, so shared functions can serve every call.
 */
export class H2Stream {
  ondata: ((this: H2Stream, chunk: Buffer) => void) | undefined = undefined;
  onend: ((this: H2Stream) => void) | undefined = undefined;
  /** The peer reset the stream or the connection went away before the answer ended. */
  onclose: ((this: H2Stream, code: number) => void) | undefined = undefined;
  /** The answer's queued data went out (flow control opened up). */
  ondrain: ((this: H2Stream) => void) | undefined = undefined;
  /** The handler's own per-call state. */
  context: unknown = undefined;
  /** performance.now() at the first header block, for metrics. */
  startedAt = 0;

  /** The peer has sent END_STREAM. */
  remoteClosed = false;
  /** We have sent END_STREAM or reset the stream. */
  localClosed = false;
  /** Bytes the peer may still send before we grant more. */
  recvWindow = DEFAULT_WINDOW;
  private released = 0;
  sendWindow: number;
  pending: Pending[] | undefined = undefined;
  queuedBytes = 0;
  contentLength = -1;
  received = 0;

  constructor(
    readonly connection: H2Connection,
    readonly id: number,
    readonly headers: RequestHeaders,
  ) {
    this.sendWindow = connection.peerInitialWindow;
  }

  /** True once the stream can send nothing more. */
  get closed(): boolean {
    return this.localClosed;
  }

  /** Sends a header block (HPACK-encoded, see encodeHeaderBlock); endStream for trailers. */
  sendHeaders(block: Buffer, endStream: boolean): void {
    if (this.localClosed) return;
    if (this.pending !== undefined) {
      this.pending.push({ headers: block, end: endStream });
      if (endStream) this.localClosed = true;
      return;
    }
    this.connection.writeHeaders(this.id, block, endStream);
    if (endStream) this.finishLocal();
  }

  sendData(data: Buffer, endStream: boolean): void {
    if (this.localClosed) return;
    const c = this.connection;
    if (this.pending === undefined && data.length <= this.sendWindow && data.length <= c.sendWindow && data.length <= c.peerMaxFrame) {
      this.sendWindow -= data.length;
      c.sendWindow -= data.length;
      c.writeFrame(DATA, endStream ? END_STREAM : 0, this.id, data);
      if (endStream) this.finishLocal();
      return;
    }
    (this.pending ??= []).push({ data, end: endStream });
    this.queuedBytes += data.length;
    if (endStream) this.localClosed = true;
    c.drain(this);
  }

  /**
   * A whole unary answer: headers, one DATA frame and trailers, in a single
   * buffer when flow control allows (the common case), else queued.
   */
  respond(headers: Buffer, data: Buffer, trailers: Buffer): void {
    if (this.localClosed) return;
    const c = this.connection;
    const n = data.length;
    if (this.pending !== undefined || n > this.sendWindow || n > c.sendWindow || n > c.peerMaxFrame || !c.canInlineHeaders(headers, trailers)) {
      this.sendHeaders(headers, false);
      this.sendData(data, false);
      this.sendHeaders(trailers, true);
      return;
    }
    this.sendWindow -= n;
    c.sendWindow -= n;
    const out = Buffer.allocUnsafe(27 + headers.length + n + trailers.length);
    let at = 0;
    frameHead(out, at, headers.length, HEADERS, END_HEADERS, this.id);
    at += 9 + headers.copy(out, at + 9);
    frameHead(out, at, n, DATA, 0, this.id);
    at += 9 + data.copy(out, at + 9);
    frameHead(out, at, trailers.length, HEADERS, END_HEADERS | END_STREAM, this.id);
    trailers.copy(out, at + 9);
    c.write(out);
    this.finishLocal();
  }

  /** Ends the stream with RST_STREAM; NO_ERROR after a complete answer tells the peer to stop sending. */
  reset(code: number): void {
    // NO_ERROR follows a complete answer: while part of it is still queued, the answer goes first.
    if (code === H2Code.NO_ERROR ? this.pending !== undefined : this.localClosed && this.pending === undefined) return;
    this.localClosed = true;
    this.pending = undefined;
    this.connection.writeFrame(RST_STREAM, 0, this.id, u32(code));
    this.connection.forget(this);
  }

  /** Grants the peer `bytes` more of this stream's window once the handler has taken them. */
  release(bytes: number): void {
    if (this.remoteClosed) return;
    this.released += bytes;
    if (this.released >= DEFAULT_WINDOW / 2) {
      // The peer's window grows when it hears of it: counted here only then.
      this.recvWindow += this.released;
      this.connection.writeFrame(WINDOW_UPDATE, 0, this.id, u32(this.released));
      this.released = 0;
    }
  }

  /** @internal */
  finishLocal(): void {
    this.localClosed = true;
    if (this.remoteClosed) this.connection.forget(this);
  }
}

export interface H2ConnectionOptions {
  /** A new request stream, its header block decoded and valid. */
  onStream(stream: H2Stream): void;
  /** A stream whose header list passed maxHeaderListBytes (its fields cut short). */
  onHeadersTooLarge(stream: H2Stream): void;
  maxConcurrentStreams: number;
  maxHeaderListBytes: number;
  /**
   * Request body bytes handlers may hold at once on this connection (see
   * holdBody): stream windows bound what is in flight, not what a handler
   * collects once it has granted the window back. Default 64 MiB, node:http2's
   * maxSessionMemory as keyward set it.
   */
  maxHeldBodyBytes?: number;
  /** Called once when the connection is gone. */
  onClose?: () => void;
  /** A handler threw while a frame was processed: the connection is closed (INTERNAL_ERROR), the process keeps serving. */
  onError?: (error: unknown) => void;
}

/** Reusable header-block sink: builds the request's field object and notes malformed fields. */
class RequestFields implements HeaderSink {
  headers: RequestHeaders = Object.create(null) as RequestHeaders;
  malformed = false;
  private regular = false;

  reset(): void {
    this.headers = Object.create(null) as RequestHeaders;
    this.malformed = false;
    this.regular = false;
  }

  field(name: string, value: string): void {
    if (BAD_VALUE_RE.test(value)) {
      this.malformed = true;
      return;
    }
    const headers = this.headers;
    if (name.charCodeAt(0) === 0x3a) {
      if (this.regular || !PSEUDO.has(name) || headers[name] !== undefined) this.malformed = true;
      else headers[name] = value;
      return;
    }
    this.regular = true;
    if (!NAME_RE.test(name) || CONNECTION_SPECIFIC.has(name) || (name === "te" && value !== "trailers")) {
      this.malformed = true;
      return;
    }
    const previous = headers[name];
    headers[name] = previous === undefined ? value : `${previous}${name === "cookie" ? "; " : ", "}${value}`;
  }
}

export class H2Connection {
  /** The peer's SETTINGS_INITIAL_WINDOW_SIZE. */
  peerInitialWindow = DEFAULT_WINDOW;
  peerMaxFrame = FRAME_SIZE;
  /** Connection-level window for what we send. */
  sendWindow = DEFAULT_WINDOW;

  private readonly streams = new Map<number, H2Stream>();
  private readonly blocked = new Set<H2Stream>();
  private readonly decoder = new HpackDecoder();
  private readonly fields = new RequestFields();
  private out: Buffer[] = [];
  private outBytes = 0;
  private flushQueued = false;
  private reading = false;
  private input: Buffer | undefined = undefined;
  private prefaceDone = false;
  private settingsSeen = false;
  private lastPeerStream = 0;
  private recvWindow = CONNECTION_WINDOW;
  private consumed = 0;
  // An open header block waiting for CONTINUATION frames.
  private blockStream = 0;
  private blockFlags = 0;
  private blockParts: Buffer[] = [];
  private blockBytes = 0;
  private tableSizeUpdate: Buffer | undefined = undefined;
  private goingAway = false;
  private dead = false;
  private resetTokens = PEER_RESET_BURST;
  private resetTokensAt = 0;
  private heldBody = 0;
  private readonly maxHeldBody: number;

  constructor(
    private readonly socket: Socket,
    private readonly options: H2ConnectionOptions,
  ) {
    this.maxHeldBody = options.maxHeldBodyBytes ?? 64 * 1024 * 1024;
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("drain", () => {
      if (!this.dead) socket.resume();
    });
    socket.on("close", () => this.onSocketClose());
    socket.on("error", () => {});
    const settings = Buffer.allocUnsafe(18);
    // SETTINGS_MAX_CONCURRENT_STREAMS, SETTINGS_MAX_HEADER_LIST_SIZE, SETTINGS_ENABLE_PUSH 0.
    settings.writeUInt16BE(0x3, 0);
    settings.writeUInt32BE(options.maxConcurrentStreams, 2);
    settings.writeUInt16BE(0x6, 6);
    settings.writeUInt32BE(options.maxHeaderListBytes, 8);
    settings.writeUInt16BE(0x2, 12);
    settings.writeUInt32BE(0, 14);
    this.writeFrame(SETTINGS, 0, 0, settings);
    this.writeFrame(WINDOW_UPDATE, 0, 0, u32(CONNECTION_WINDOW - DEFAULT_WINDOW));
    this.flush();
  }

  /** Counts `bytes` of request body a handler keeps; false (nothing counted) when the connection's budget would be passed. */
  holdBody(bytes: number): boolean {
    if (this.heldBody + bytes > this.maxHeldBody) return false;
    this.heldBody += bytes;
    return true;
  }

  /** Gives back what holdBody counted. */
  releaseBody(bytes: number): void {
    this.heldBody -= bytes;
  }

  /** Graceful close: GOAWAY now, the socket ends once open streams have answered. */
  shutdown(): void {
    if (this.goingAway || this.dead) return;
    this.goingAway = true;
    this.writeFrame(GOAWAY, 0, 0, Buffer.concat([u32(this.lastPeerStream), u32(H2Code.NO_ERROR)]));
    this.scheduleFlush();
    if (this.streams.size === 0) this.endSocket();
  }

  // ---- output ----

  /** @internal */
  write(bytes: Buffer): void {
    // Gone: late answers (a database lookup finishing) have nowhere to go.
    if (this.dead) return;
    this.out.push(bytes);
    this.outBytes += bytes.length;
    if (!this.reading) this.scheduleFlush();
  }

  /** @internal */
  writeFrame(type: number, flags: number, id: number, payload: Buffer): void {
    this.write(frame(type, flags, id, payload));
  }

  /** @internal True when both blocks fit one frame each and no table size update is due. */
  canInlineHeaders(headers: Buffer, trailers: Buffer): boolean {
    return this.tableSizeUpdate === undefined && headers.length <= this.peerMaxFrame && trailers.length <= this.peerMaxFrame;
  }

  /** @internal A header block as HEADERS plus CONTINUATION frames within the peer's frame size. */
  writeHeaders(id: number, block: Buffer, endStream: boolean): void {
    if (this.tableSizeUpdate !== undefined) {
      block = Buffer.concat([this.tableSizeUpdate, block]);
      this.tableSizeUpdate = undefined;
    }
    const max = this.peerMaxFrame;
    const end = endStream ? END_STREAM : 0;
    if (block.length <= max) {
      this.writeFrame(HEADERS, END_HEADERS | end, id, block);
      return;
    }
    this.writeFrame(HEADERS, end, id, block.subarray(0, max));
    for (let at = max; at < block.length; at += max) {
      const last = at + max >= block.length;
      this.writeFrame(CONTINUATION, last ? END_HEADERS : 0, id, block.subarray(at, at + max));
    }
  }

  /** @internal Sends what flow control allows of a stream's queued answer. */
  drain(stream: H2Stream): void {
    const pending = stream.pending;
    if (pending === undefined) return;
    while (pending.length > 0) {
      const item = pending[0]!;
      if ("headers" in item) {
        this.writeHeaders(stream.id, item.headers, item.end);
        pending.shift();
        continue;
      }
      const data = item.data;
      const n = Math.min(data.length, stream.sendWindow, this.sendWindow, this.peerMaxFrame);
      if (n <= 0 && data.length > 0) {
        this.blocked.add(stream);
        return;
      }
      stream.sendWindow -= n;
      this.sendWindow -= n;
      stream.queuedBytes -= n;
      const last = n === data.length;
      this.writeFrame(DATA, last && item.end ? END_STREAM : 0, stream.id, data.subarray(0, n));
      if (last) pending.shift();
      else item.data = data.subarray(n);
    }
    stream.pending = undefined;
    this.blocked.delete(stream);
    if (stream.localClosed) stream.finishLocal();
    else stream.ondrain?.();
  }

  private scheduleFlush(): void {
    if (this.flushQueued) return;
    this.flushQueued = true;
    queueMicrotask(() => this.flush());
  }

  private flush(): void {
    this.flushQueued = false;
    if (this.out.length === 0 || this.dead) return;
    const bytes = this.out.length === 1 ? this.out[0]! : Buffer.concat(this.out, this.outBytes);
    this.out = [];
    this.outBytes = 0;
    this.socket.write(bytes);
    if (this.socket.writableLength > WRITE_HIGH_WATER) this.socket.pause();
  }

  private endSocket(): void {
    this.flush();
    this.socket.end();
    // A peer that never closes its side must not hold the socket.
    setTimeout(() => this.socket.destroy(), 5_000).unref();
  }

  /** Connection error: GOAWAY with the code, then close (RFC 9113 5.4.1). */
  private fail(code: number, why: string): void {
    if (this.dead) return;
    this.out = [];
    this.outBytes = 0;
    this.writeFrame(GOAWAY, 0, 0, Buffer.concat([u32(this.lastPeerStream), u32(code), Buffer.from(why)]));
    this.flush();
    this.dead = true;
    this.closeStreams(H2Code.CANCEL);
    this.socket.end();
    setTimeout(() => this.socket.destroy(), 1_000).unref();
  }

  private onSocketClose(): void {
    this.dead = true;
    this.closeStreams(H2Code.CANCEL);
    this.options.onClose?.();
  }

  private closeStreams(code: number): void {
    const streams = [...this.streams.values()];
    this.streams.clear();
    this.blocked.clear();
    for (const stream of streams) {
      const wasOpen = !stream.localClosed || stream.pending !== undefined;
      stream.localClosed = true;
      stream.pending = undefined;
      if (wasOpen) stream.onclose?.(code);
    }
  }

  /** @internal */
  forget(stream: H2Stream): void {
    this.streams.delete(stream.id);
    this.blocked.delete(stream);
    if (this.goingAway && this.streams.size === 0) this.endSocket();
  }

  // ---- input ----

  private onData(chunk: Buffer): void {
    if (this.dead) return;
    let buf = this.input === undefined ? chunk : Buffer.concat([this.input, chunk]);
    let p = 0;
    this.reading = true;
    try {
      if (!this.prefaceDone) {
        if (buf.length < PREFACE.length) {
          this.input = buf;
          return;
        }
        if (!buf.subarray(0, PREFACE.length).equals(PREFACE)) throw new ConnectionError(H2Code.PROTOCOL_ERROR, "bad connection preface");
        this.prefaceDone = true;
        p = PREFACE.length;
      }
      while (buf.length - p >= 9) {
        const length = (buf[p]! << 16) | (buf[p + 1]! << 8) | buf[p + 2]!;
        if (length > FRAME_SIZE) throw new ConnectionError(H2Code.FRAME_SIZE_ERROR, "frame larger than SETTINGS_MAX_FRAME_SIZE");
        if (buf.length - p - 9 < length) break;
        const type = buf[p + 3]!;
        const flags = buf[p + 4]!;
        const id = buf.readUInt32BE(p + 5) & 0x7fffffff;
        p += 9;
        this.onFrame(type, flags, id, buf, p, p + length);
        p += length;
        if (this.dead) return;
      }
      this.input = p === buf.length ? undefined : buf.subarray(p);
      if (this.consumed >= CONNECTION_WINDOW / 2) {
        this.writeFrame(WINDOW_UPDATE, 0, 0, u32(this.consumed));
        this.recvWindow += this.consumed;
        this.consumed = 0;
      }
    } catch (error) {
      if (error instanceof ConnectionError) this.fail(error.code, error.message);
      else if (error instanceof HpackError) this.fail(H2Code.COMPRESSION_ERROR, "header block could not be decoded");
      else {
        this.fail(H2Code.INTERNAL_ERROR, "internal error");
        this.options.onError?.(error);
      }
    } finally {
      this.reading = false;
      buf = undefined as unknown as Buffer;
      this.flush();
    }
  }

  private onFrame(type: number, flags: number, id: number, buf: Buffer, start: number, end: number): void {
    if (!this.settingsSeen) {
      if (type !== SETTINGS || flags & ACK) throw new ConnectionError(H2Code.PROTOCOL_ERROR, "the preface must be followed by SETTINGS");
      this.settingsSeen = true;
    }
    if (this.blockStream !== 0 && type !== CONTINUATION) throw new ConnectionError(H2Code.PROTOCOL_ERROR, "header block interrupted");
    const length = end - start;
    switch (type) {
      case DATA:
        return this.onDataFrame(flags, id, buf, start, end);
      case HEADERS: {
        if (id === 0) throw new ConnectionError(H2Code.PROTOCOL_ERROR, "HEADERS on stream 0");
        let s = start;
        let e = end;
        if (flags & PADDED) e = unpaddedEnd(buf, s++, e);
        let selfDependent = false;
        if (flags & PRIORITY_FLAG) {
          if (e - s < 5) throw new ConnectionError(H2Code.FRAME_SIZE_ERROR, "HEADERS too short for its priority");
          selfDependent = (buf.readUInt32BE(s) & 0x7fffffff) === id;
          s += 5;
        }
        if (flags & END_HEADERS) return this.onHeaderBlock(id, flags, buf, s, e, selfDependent);
        this.blockStream = id;
        this.blockFlags = flags | (selfDependent ? 0x100 : 0);
        this.blockParts = [Buffer.from(buf.subarray(s, e))];
        this.blockBytes = e - s;
        return;
      }
      case CONTINUATION: {
        if (this.blockStream === 0 || id !== this.blockStream) throw new ConnectionError(H2Code.PROTOCOL_ERROR, "unexpected CONTINUATION");
        this.blockBytes += length;
        // Header blocks are buffered whole (HPACK state needs all of it): past
        // this size the connection is closed (CONTINUATION flood). Below it, a
        // list over the limit gets a stream-level answer (onHeadersTooLarge).
        if (this.blockBytes > Math.max(64 * 1024, 2 * this.options.maxHeaderListBytes)) throw new ConnectionError(H2Code.ENHANCE_YOUR_CALM, "header block too large");
        this.blockParts.push(Buffer.from(buf.subarray(start, end)));
        if (!(flags & END_HEADERS)) return;
        const block = Buffer.concat(this.blockParts);
        const blockFlags = this.blockFlags;
        this.blockStream = 0;
        this.blockParts = [];
        return this.onHeaderBlock(id, blockFlags, block, 0, block.length, (blockFlags & 0x100) !== 0);
      }
      case PRIORITY:
        if (id === 0) throw new ConnectionError(H2Code.PROTOCOL_ERROR, "PRIORITY on stream 0");
        if (length !== 5) return this.streamError(id, H2Code.FRAME_SIZE_ERROR);
        if ((buf.readUInt32BE(start) & 0x7fffffff) === id) this.streamError(id, H2Code.PROTOCOL_ERROR);
        return;
      case RST_STREAM:
        return this.onReset(id, length, buf, start);
      case SETTINGS:
        return this.onSettings(flags, id, length, buf, start);
      case PUSH_PROMISE:
        throw new ConnectionError(H2Code.PROTOCOL_ERROR, "PUSH_PROMISE from a client");
      case PING:
        if (id !== 0) throw new ConnectionError(H2Code.PROTOCOL_ERROR, "PING on a stream");
        if (length !== 8) throw new ConnectionError(H2Code.FRAME_SIZE_ERROR, "PING must be 8 bytes");
        if (!(flags & ACK)) this.writeFrame(PING, ACK, 0, Buffer.from(buf.subarray(start, end)));
        return;
      case GOAWAY:
        if (id !== 0) throw new ConnectionError(H2Code.PROTOCOL_ERROR, "GOAWAY on a stream");
        if (length < 8) throw new ConnectionError(H2Code.FRAME_SIZE_ERROR, "GOAWAY too short");
        // The client opens no more streams; answer those open, then close.
        this.goingAway = true;
        if (this.streams.size === 0) this.endSocket();
        return;
      case WINDOW_UPDATE:
        return this.onWindowUpdate(id, length, buf, start);
      default:
        // Unknown frame types are ignored (RFC 9113 4.1).
        return;
    }
  }

  private onDataFrame(flags: number, id: number, buf: Buffer, start: number, end: number): void {
    if (id === 0) throw new ConnectionError(H2Code.PROTOCOL_ERROR, "DATA on stream 0");
    const length = end - start;
    this.recvWindow -= length;
    if (this.recvWindow < 0) throw new ConnectionError(H2Code.FLOW_CONTROL_ERROR, "connection window exceeded");
    // The connection window is given back at once; each stream's own window
    // bounds what it buffers.
    this.consumed += length;
    const stream = this.streams.get(id);
    if (stream === undefined) {
      if (id > this.lastPeerStream) throw new ConnectionError(H2Code.PROTOCOL_ERROR, "DATA on an idle stream");
      // A stream we have reset or finished: the frame may have crossed our RST_STREAM.
      return;
    }
    if (stream.remoteClosed) return this.streamError(id, H2Code.STREAM_CLOSED);
    stream.recvWindow -= length;
    if (stream.recvWindow < 0) return this.streamError(id, H2Code.FLOW_CONTROL_ERROR);
    let s = start;
    let e = end;
    if (flags & PADDED) {
      e = unpaddedEnd(buf, s++, e);
      // Padding is flow-controlled but never reaches the handler: grant it back now.
      stream.release(s - start + (end - e));
    }
    stream.received += e - s;
    if (stream.contentLength >= 0 && stream.received > stream.contentLength) return this.streamError(id, H2Code.PROTOCOL_ERROR);
    if (e > s) stream.ondata?.(buf.subarray(s, e));
    if (flags & END_STREAM) this.endRemote(stream);
  }

  private endRemote(stream: H2Stream): void {
    if (stream.contentLength >= 0 && stream.received !== stream.contentLength) return this.streamError(stream.id, H2Code.PROTOCOL_ERROR);
    stream.remoteClosed = true;
    if (stream.localClosed && stream.pending === undefined) this.forget(stream);
    stream.onend?.();
  }

  private onHeaderBlock(id: number, flags: number, buf: Buffer, start: number, end: number, selfDependent: boolean): void {
    const fields = this.fields;
    fields.reset();
    const fits = this.decoder.decode(buf, start, end, fields, this.options.maxHeaderListBytes);
    const existing = this.streams.get(id);
    if (existing !== undefined) {
      // Trailers: they must end the stream. gRPC and Connect send none; their fields are dropped.
      if (existing.remoteClosed) return this.streamError(id, H2Code.STREAM_CLOSED);
      if (!(flags & END_STREAM) || fields.headers[":method"] !== undefined) return this.streamError(id, H2Code.PROTOCOL_ERROR);
      return this.endRemote(existing);
    }
    // A stream we have already closed: the block kept the HPACK state in step; nothing else to do.
    if (id <= this.lastPeerStream) return;
    if ((id & 1) === 0) throw new ConnectionError(H2Code.PROTOCOL_ERROR, "client stream ids are odd");
    this.lastPeerStream = id;
    if (this.goingAway || this.streams.size >= this.options.maxConcurrentStreams) {
      this.writeFrame(RST_STREAM, 0, id, u32(H2Code.REFUSED_STREAM));
      return;
    }
    const headers = fields.headers;
    if (
      selfDependent ||
      fields.malformed ||
      headers[":method"] === undefined ||
      headers[":scheme"] === undefined ||
      !headers[":path"] ||
      headers[":method"] === "CONNECT"
    ) {
      if (fits) return void this.writeFrame(RST_STREAM, 0, id, u32(H2Code.PROTOCOL_ERROR));
    }
    const stream = new H2Stream(this, id, headers);
    stream.startedAt = performance.now();
    const contentLength = headers["content-length"];
    if (contentLength !== undefined) {
      if (!/^\d{1,15}$/.test(contentLength)) return void this.writeFrame(RST_STREAM, 0, id, u32(H2Code.PROTOCOL_ERROR));
      stream.contentLength = Number(contentLength);
    }
    this.streams.set(id, stream);
    if (flags & END_STREAM) stream.remoteClosed = true;
    if (!fits) {
      this.options.onHeadersTooLarge(stream);
      if (!stream.localClosed) stream.reset(H2Code.REFUSED_STREAM);
      return;
    }
    this.options.onStream(stream);
    if (stream.remoteClosed) {
      if (stream.contentLength > 0) return this.streamError(id, H2Code.PROTOCOL_ERROR);
      if (stream.localClosed && stream.pending === undefined) this.forget(stream);
      stream.onend?.();
    }
  }

  private onReset(id: number, length: number, buf: Buffer, start: number): void {
    if (id === 0) throw new ConnectionError(H2Code.PROTOCOL_ERROR, "RST_STREAM on stream 0");
    if (length !== 4) throw new ConnectionError(H2Code.FRAME_SIZE_ERROR, "RST_STREAM must be 4 bytes");
    if (id > this.lastPeerStream) throw new ConnectionError(H2Code.PROTOCOL_ERROR, "RST_STREAM on an idle stream");
    const stream = this.streams.get(id);
    if (stream === undefined) return;
    const now = performance.now();
    this.resetTokens = Math.min(PEER_RESET_BURST, this.resetTokens + ((now - this.resetTokensAt) / 1000) * PEER_RESET_RATE);
    this.resetTokensAt = now;
    if (--this.resetTokens < 0) throw new ConnectionError(H2Code.ENHANCE_YOUR_CALM, "too many stream resets");
    const open = !stream.localClosed || stream.pending !== undefined;
    stream.localClosed = true;
    stream.remoteClosed = true;
    stream.pending = undefined;
    this.forget(stream);
    if (open) stream.onclose?.(buf.readUInt32BE(start));
  }

  private onSettings(flags: number, id: number, length: number, buf: Buffer, start: number): void {
    if (id !== 0) throw new ConnectionError(H2Code.PROTOCOL_ERROR, "SETTINGS on a stream");
    if (flags & ACK) {
      if (length !== 0) throw new ConnectionError(H2Code.FRAME_SIZE_ERROR, "SETTINGS ack with a payload");
      return;
    }
    if (length % 6 !== 0) throw new ConnectionError(H2Code.FRAME_SIZE_ERROR, "SETTINGS length not a multiple of 6");
    for (let at = start; at < start + length; at += 6) {
      const key = buf.readUInt16BE(at);
      const value = buf.readUInt32BE(at + 2);
      switch (key) {
        case 0x1:
          // Our encoder never adds to its table; a smaller limit is still
          // acknowledged with a size update, as the peer's decoder expects.
          if (value < 4096) this.tableSizeUpdate = encodeTableSizeUpdate(value);
          break;
        case 0x2:
          if (value > 1) throw new ConnectionError(H2Code.PROTOCOL_ERROR, "bad SETTINGS_ENABLE_PUSH");
          break;
        case 0x4: {
          if (value > MAX_WINDOW) throw new ConnectionError(H2Code.FLOW_CONTROL_ERROR, "bad SETTINGS_INITIAL_WINDOW_SIZE");
          const delta = value - this.peerInitialWindow;
          this.peerInitialWindow = value;
          for (const stream of this.streams.values()) {
            stream.sendWindow += delta;
            if (stream.sendWindow > MAX_WINDOW) throw new ConnectionError(H2Code.FLOW_CONTROL_ERROR, "stream window overflow");
          }
          break;
        }
        case 0x5:
          if (value < FRAME_SIZE || value > 0xffffff) throw new ConnectionError(H2Code.PROTOCOL_ERROR, "bad SETTINGS_MAX_FRAME_SIZE");
          this.peerMaxFrame = value;
          break;
        default:
          // Unknown settings, and those that do not bind a server here, are ignored.
          break;
      }
    }
    this.writeFrame(SETTINGS, ACK, 0, Buffer.alloc(0));
    this.drainBlocked();
  }

  private onWindowUpdate(id: number, length: number, buf: Buffer, start: number): void {
    if (length !== 4) throw new ConnectionError(H2Code.FRAME_SIZE_ERROR, "WINDOW_UPDATE must be 4 bytes");
    const increment = buf.readUInt32BE(start) & 0x7fffffff;
    if (id === 0) {
      if (increment === 0) throw new ConnectionError(H2Code.PROTOCOL_ERROR, "WINDOW_UPDATE of 0");
      this.sendWindow += increment;
      if (this.sendWindow > MAX_WINDOW) throw new ConnectionError(H2Code.FLOW_CONTROL_ERROR, "connection window overflow");
      this.drainBlocked();
      return;
    }
    const stream = this.streams.get(id);
    if (stream === undefined) {
      if (id > this.lastPeerStream) throw new ConnectionError(H2Code.PROTOCOL_ERROR, "WINDOW_UPDATE on an idle stream");
      return;
    }
    if (increment === 0) return this.streamError(id, H2Code.PROTOCOL_ERROR);
    stream.sendWindow += increment;
    if (stream.sendWindow > MAX_WINDOW) return this.streamError(id, H2Code.FLOW_CONTROL_ERROR);
    if (stream.pending !== undefined) this.drain(stream);
  }

  private drainBlocked(): void {
    for (const stream of [...this.blocked]) {
      if (this.sendWindow <= 0) return;
      this.drain(stream);
    }
  }

  /** Stream error (RFC 9113 5.4.2): RST_STREAM; the handler hears of it through onclose. */
  private streamError(id: number, code: number): void {
    const stream = this.streams.get(id);
    this.writeFrame(RST_STREAM, 0, id, u32(code));
    if (stream === undefined) return;
    const open = !stream.localClosed || stream.pending !== undefined;
    stream.localClosed = true;
    stream.remoteClosed = true;
    stream.pending = undefined;
    this.forget(stream);
    if (open) stream.onclose?.(code);
  }
}

/** A header block from name/value pairs (response headers and trailers). */
export function headerBlock(fields: Record<string, string | number | readonly string[]>): Buffer {
  const list: [string, string][] = [];
  for (const [name, value] of Object.entries(fields)) {
    if (Array.isArray(value)) for (const v of value) list.push([name, String(v)]);
    else list.push([name, String(value)]);
  }
  return encodeHeaderBlock(list);
}
