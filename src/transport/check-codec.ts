// Hand-written protobuf codec for ext_authz Check on the lean gRPC path.
// protobuf-es decodes a whole CheckRequest by reflection (peers, addresses,
// time, every header) and builds a CheckResponse message per call, which cost
// more than the rest of a cache hit; this reads only what the decision needs
// and writes the response bytes directly. Field numbers are those of
// proto/envoy/service/auth/v3/*.proto, proto/envoy/config/core/v3/base.proto,
// proto/envoy/type/v3/http_status.proto, proto/google/rpc/status.proto and
// google/protobuf/struct.proto. Tests check it against protobuf-es on random
// input (test/unit/check-codec.test.ts).
import { isUtf8 } from "node:buffer";
import { invalidArgument } from "../core/errors.js";
import { HeaderValueOption_HeaderAppendAction } from "../gen/envoy/config/core/v3/base_pb.js";
import { REQUIRED_SCOPES_PARAM, type Header } from "./authz-response.js";
import type { CheckAllow, CheckInput, CheckResult, MetadataEntry } from "./ext-authz.js";
import { ProtoWriter } from "./proto-writer.js";

// ignoreBOM keeps a leading U+FEFF as data, as protobuf requires (and protobuf-es does).
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
// raw_value is bytes: decoded leniently with a leading BOM dropped, exactly as
// ext-authz.ts's checkInputOf does for the Connect path.
const rawUtf8 = new TextDecoder();

function malformed(): Error {
  return invalidArgument("request is not a valid envoy.service.auth.v3.CheckRequest message");
}

/** A tag for a length-delimited field. */
const len = (field: number) => (field << 3) | 2;

// The fields read (all length-delimited).
const CHECK_ATTRIBUTES = len(1); // CheckRequest.attributes
const ATTRS_REQUEST = len(4); // AttributeContext.request
const ATTRS_CONTEXT_EXTENSIONS = len(10); // AttributeContext.context_extensions
const REQUEST_HTTP = len(2); // AttributeContext.Request.http
const HTTP_HEADERS = len(3); // HttpRequest.headers
const HTTP_HEADER_MAP = len(13); // HttpRequest.header_map
const HEADER_MAP_HEADERS = len(1); // HeaderMap.headers
const HEADER_KEY = len(1); // HeaderValue.key, and a map entry's key
const HEADER_VALUE = len(2); // HeaderValue.value, and a map entry's value
const HEADER_RAW_VALUE = len(3); // HeaderValue.raw_value

/** Bit n set for each field n of a message. */
const fields = (...numbers: number[]) => numbers.reduce((mask, n) => mask | (1 << n), 0);

// Every known field of the messages walked, by wire type: a known field with
// another wire type is malformed (protobuf-es would misread it), any other
// field is skipped as unknown.
const CHECK_REQUEST_LEN = fields(1);
const ATTRIBUTE_CONTEXT_LEN = fields(1, 2, 4, 10, 11, 12, 13);
const REQUEST_LEN = fields(1, 2);
const HTTP_REQUEST_LEN = fields(1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13);
const HTTP_REQUEST_VARINT = fields(9); // size (int64)
const HEADER_MAP_LEN = fields(1);
const HEADER_VALUE_LEN = fields(1, 2, 3);
const MAP_ENTRY_LEN = fields(1, 2);

// Nested unknown groups, as protobuf-es's default recursion limit.
const MAX_GROUP_DEPTH = 100;

/** The bytes as a string when all are ASCII, else undefined. */
function asciiText(buf: Buffer, start: number, stop: number): string | undefined {
  for (let i = start; i < stop; i++) if (buf[i]! >= 0x80) return undefined;
  // Straight into a one-byte string: building it from a char-code array in JS
  // allocated an array of 8 bytes per character first (~400 B for a key).
  return buf.toString("latin1", start, stop);
}

class Reader {
  pos = 0;
  readonly end: number;
  // The last map entry read (reused: no allocation per entry).
  key = "";
  value = "";

  constructor(readonly buf: Buffer) {
    this.end = buf.length;
  }

  varint(): number {
    // Most varints here (tags, lengths) are one byte.
    if (this.pos < this.end && this.buf[this.pos]! < 0x80) return this.buf[this.pos++]!;
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw malformed();
      const b = this.buf[this.pos++]!;
      // Beyond 2^53 precision is lost, but such values only occur in skipped fields or lengths we reject.
      result += (b & 0x7f) * scale;
      if (b < 0x80) return result;
      scale *= 0x80;
    }
    throw malformed();
  }

  /** A tag as protobuf-es accepts it: at most 5 bytes and 32 bits, field > 0, wire type ≤ 5. */
  tag(): number {
    const start = this.pos;
    const tag = this.varint();
    if (this.pos - start > 5 || tag > 0xffff_ffff || tag < 8 || (tag & 7) > 5) throw malformed();
    return tag;
  }

  /** Reads a length prefix; returns where the field ends, which must be within `parentEnd`. */
  sub(parentEnd: number): number {
    const length = this.varint();
    const stop = this.pos + length;
    if (stop > parentEnd) throw malformed();
    return stop;
  }

  /** A length-delimited UTF-8 string. */
  text(): string {
    const stop = this.sub(this.end);
    const start = this.pos;
    this.pos = stop;
    const ascii = asciiText(this.buf, start, stop);
    if (ascii !== undefined) return ascii;
    try {
      return utf8.decode(this.buf.subarray(start, stop));
    } catch {
      throw invalidArgument("request contains invalid UTF-8");
    }
  }

  /** Skips a field of the given tag without decoding it. */
  skip(tag: number, depth: number): void {
    switch (tag & 7) {
      case 0:
        this.varint();
        break;
      case 1:
        this.pos += 8;
        break;
      case 2: {
        // Read the length first: `pos += varint()` would add to the old position.
        const length = this.varint();
        this.pos += length;
        break;
      }
      case 3: {
        if (depth >= MAX_GROUP_DEPTH) throw malformed();
        for (;;) {
          const inner = this.tag();
          if ((inner & 7) === 4) {
            if (inner >>> 3 !== tag >>> 3) throw malformed();
            break;
          }
          this.skip(inner, depth + 1);
        }
        break;
      }
      case 5:
        this.pos += 4;
        break;
      default:
        // An end-group tag outside a group.
        throw malformed();
    }
    if (this.pos > this.end) throw malformed();
  }

  /** Skips a field not read, after checking a known field has its declared wire type. */
  other(tag: number, lenFields: number, varintFields = 0): void {
    const field = tag >>> 3;
    if (field < 32) {
      const bit = 1 << field;
      const wire = tag & 7;
      if (((lenFields & bit) !== 0 && wire !== 2) || ((varintFields & bit) !== 0 && wire !== 0)) throw malformed();
    }
    this.skip(tag, 0);
  }

  /** A map<string, string> entry into key/value; absent fields are "". */
  entry(end: number): void {
    this.key = "";
    this.value = "";
    while (this.pos < end) {
      const tag = this.tag();
      if (tag === HEADER_KEY) this.key = this.text();
      else if (tag === HEADER_VALUE) this.value = this.text();
      else this.other(tag, MAP_ENTRY_LEN);
      if (this.pos > end) throw malformed();
    }
  }
}

function rawText(buf: Buffer, start: number, stop: number): string {
  return asciiText(buf, start, stop) ?? rawUtf8.decode(buf.subarray(start, stop));
}

/** Rejects invalid UTF-8 in a string field that is skipped, as protobuf-es would on decoding it. */
function checkUtf8(buf: Buffer, start: number, stop: number): void {
  for (let i = start; i < stop; i++) {
    if (buf[i]! >= 0x80) {
      if (!isUtf8(buf.subarray(start, stop))) throw invalidArgument("request contains invalid UTF-8");
      return;
    }
  }
}

/**
 * Which headers the decision can look at, by name. Envoy sends every request
 * header (user agents, cookies, tracing...); turning each into strings cost
 * more than the decision, so only matching ones are. Matching is on the
 * name's bytes, ASCII case-insensitive; a name with non-ASCII bytes is always
 * kept (Unicode lowercasing can map it onto an ASCII name).
 */
export interface HeaderFilter {
  /** Lowercase ASCII names kept whole. */
  readonly names: readonly Buffer[];
  /** Lowercase ASCII prefixes. */
  readonly prefixes: readonly Buffer[];
}

export function createHeaderFilter(names: readonly string[], prefixes: readonly string[]): HeaderFilter {
  const ascii = (s: string) => {
    if (!/^[\x00-\x7f]*$/.test(s)) throw new TypeError(`header filter entries must be ASCII: ${JSON.stringify(s)}`);
    return Buffer.from(s.toLowerCase(), "latin1");
  };
  return { names: names.map(ascii), prefixes: prefixes.map(ascii) };
}

function startsWithLower(buf: Buffer, start: number, lower: Buffer): boolean {
  for (let i = 0; i < lower.length; i++) {
    let b = buf[start + i]!;
    if (b >= 0x41 && b <= 0x5a) b |= 0x20;
    if (b !== lower[i]) return false;
  }
  return true;
}

/** Whether the filter keeps a header by its name's span (absent: the empty name). */
function keepHeader(filter: HeaderFilter | undefined, buf: Buffer, name: Span): boolean {
  if (filter === undefined) return true;
  const start = name.start < 0 ? 0 : name.start;
  const stop = name.start < 0 ? 0 : name.stop;
  const length = stop - start;
  for (const name of filter.names) if (name.length === length && startsWithLower(buf, start, name)) return true;
  for (const prefix of filter.prefixes) if (prefix.length <= length && startsWithLower(buf, start, prefix)) return true;
  for (let i = start; i < stop; i++) if (buf[i]! >= 0x80) return true;
  return false;
}

/** Position of the last occurrence of a string field; start -1 when absent. */
interface Span {
  start: number;
  stop: number;
}

/** Reads a string field's span, validating it as UTF-8 (every occurrence is, as protobuf-es does). */
function readSpan(r: Reader, end: number, span: Span): void {
  const stop = r.sub(end);
  checkUtf8(r.buf, r.pos, stop);
  span.start = r.pos;
  span.stop = stop;
  r.pos = stop;
}

function spanText(r: Reader, span: Span): string {
  return span.start < 0 ? "" : (asciiText(r.buf, span.start, span.stop) ?? utf8.decode(r.buf.subarray(span.start, span.stop)));
}

function readHeaderValue(r: Reader, end: number, input: Target): void {
  const key = input.keySpan;
  const value = input.valueSpan;
  key.start = -1;
  value.start = -1;
  let rawStart = 0;
  let rawStop = 0;
  while (r.pos < end) {
    const tag = r.tag();
    if (tag === HEADER_KEY) readSpan(r, end, key);
    else if (tag === HEADER_VALUE) readSpan(r, end, value);
    else if (tag === HEADER_RAW_VALUE) {
      rawStop = r.sub(end);
      rawStart = r.pos;
      r.pos = rawStop;
    } else r.other(tag, HEADER_VALUE_LEN);
    if (r.pos > end) throw malformed();
  }
  if (!keepHeader(input.filter, r.buf, key)) return;
  const text = spanText(r, value);
  input.headerMap.push([spanText(r, key), text !== "" ? text : rawText(r.buf, rawStart, rawStop)]);
}

function readHeaderMap(r: Reader, end: number, input: Target): void {
  while (r.pos < end) {
    const tag = r.tag();
    if (tag === HEADER_MAP_HEADERS) readHeaderValue(r, r.sub(end), input);
    else r.other(tag, HEADER_MAP_LEN);
    if (r.pos > end) throw malformed();
  }
}

// A message field sent more than once is merged, as protobuf requires: map
// entries added, repeated fields appended. Reading every occurrence into the
// same input does exactly that.
interface Target {
  headers: Header[];
  /** Positions in `headers` by name, once there are too many for a linear search. */
  index: Map<string, number> | undefined;
  headerMap: Header[];
  requiredScopes: string | undefined;
  filter: HeaderFilter | undefined;
  // Reused per header: no allocation for the headers that are skipped.
  keySpan: Span;
  valueSpan: Span;
}

// Envoy sends each name once and about ten of them: a linear search for a
// repeat is cheaper than hashing every fresh name into a Map.
const LINEAR_HEADERS = 32;

/** A `headers` map entry: a repeated key keeps its first position and takes the last value. */
function setHeader(input: Target, key: string, value: string): void {
  const headers = input.headers;
  if (input.index === undefined) {
    for (let i = 0; i < headers.length; i++) {
      if (headers[i]![0] === key) {
        headers[i] = [key, value];
        return;
      }
    }
    headers.push([key, value]);
    if (headers.length === LINEAR_HEADERS) input.index = new Map(headers.map((h, i) => [h[0], i]));
    return;
  }
  const at = input.index.get(key);
  if (at !== undefined) {
    headers[at] = [key, value];
  } else {
    input.index.set(key, headers.length);
    headers.push([key, value]);
  }
}

/** A `headers` map entry; strings are made only for a header the filter keeps. */
function readHeaderEntry(r: Reader, end: number, input: Target): void {
  const key = input.keySpan;
  const value = input.valueSpan;
  key.start = -1;
  value.start = -1;
  while (r.pos < end) {
    const tag = r.tag();
    if (tag === HEADER_KEY) readSpan(r, end, key);
    else if (tag === HEADER_VALUE) readSpan(r, end, value);
    else r.other(tag, MAP_ENTRY_LEN);
    if (r.pos > end) throw malformed();
  }
  if (!keepHeader(input.filter, r.buf, key)) return;
  setHeader(input, spanText(r, key), spanText(r, value));
}

function readHttp(r: Reader, end: number, input: Target): void {
  while (r.pos < end) {
    const tag = r.tag();
    if (tag === HTTP_HEADERS) {
      readHeaderEntry(r, r.sub(end), input);
    } else if (tag === HTTP_HEADER_MAP) {
      readHeaderMap(r, r.sub(end), input);
    } else r.other(tag, HTTP_REQUEST_LEN, HTTP_REQUEST_VARINT);
    if (r.pos > end) throw malformed();
  }
}

function readRequest(r: Reader, end: number, input: Target): void {
  while (r.pos < end) {
    const tag = r.tag();
    if (tag === REQUEST_HTTP) readHttp(r, r.sub(end), input);
    else r.other(tag, REQUEST_LEN);
    if (r.pos > end) throw malformed();
  }
}

function readAttributes(r: Reader, end: number, input: Target): void {
  while (r.pos < end) {
    const tag = r.tag();
    if (tag === ATTRS_REQUEST) {
      readRequest(r, r.sub(end), input);
    } else if (tag === ATTRS_CONTEXT_EXTENSIONS) {
      r.entry(r.sub(end));
      if (r.key === REQUIRED_SCOPES_PARAM) input.requiredScopes = r.value;
    } else r.other(tag, ATTRIBUTE_CONTEXT_LEN);
    if (r.pos > end) throw malformed();
  }
}

/**
 * Decodes what Check needs from envoy.service.auth.v3.CheckRequest; every other
 * field is skipped by wire type, nested messages without decoding them.
 * Rejects truncation, bad wire types, oversized varints and invalid UTF-8 in
 * header names and values, exactly as protobuf-es does. With a filter, only
 * the headers it keeps are returned.
 */
export function decodeCheckRequest(bytes: Uint8Array, filter?: HeaderFilter): CheckInput {
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const r = new Reader(buf);
  const input: Target = {
    headers: [],
    index: undefined,
    headerMap: [],
    requiredScopes: undefined,
    filter,
    keySpan: { start: -1, stop: 0 },
    valueSpan: { start: -1, stop: 0 },
  };
  while (r.pos < r.end) {
    const tag = r.tag();
    if (tag === CHECK_ATTRIBUTES) readAttributes(r, r.sub(r.end), input);
    else r.other(tag, CHECK_REQUEST_LEN);
  }
  return { headers: input.headers, headerMap: input.headerMap, requiredScopes: input.requiredScopes };
}


const OVERWRITE = HeaderValueOption_HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD;

// CheckResponse: status(1) google.rpc.Status, denied_response(2), ok_response(3), dynamic_metadata(4).
const RESPONSE_STATUS = len(1);
const RESPONSE_DENIED = len(2);
const RESPONSE_OK = len(3);
const RESPONSE_METADATA = len(4);
// google.rpc.Status: code(1) int32, message(2).
const STATUS_CODE = 1 << 3;
const STATUS_MESSAGE = len(2);
// DeniedHttpResponse: status(1) HttpStatus{code(1) enum}, headers(2), body(3).
const DENIED_STATUS = len(1);
const HTTP_STATUS_CODE = 1 << 3;
const DENIED_HEADERS = len(2);
const DENIED_BODY = len(3);
// OkHttpResponse: headers(2), headers_to_remove(5), response_headers_to_add(6).
const OK_HEADERS = len(2);
const OK_HEADERS_TO_REMOVE = len(5);
const OK_RESPONSE_HEADERS_TO_ADD = len(6);
// HeaderValueOption: header(1) HeaderValue{key(1), value(2)}, append_action(3) enum.
const OPTION_HEADER = len(1);
const OPTION_APPEND_ACTION = 3 << 3;
// google.protobuf.Struct: fields(1) map<string, Value>; Value: string_value(3), list_value(6) ListValue{values(1)}.
const STRUCT_FIELDS = len(1);
const ENTRY_KEY = len(1);
const ENTRY_VALUE = len(2);
const VALUE_STRING = len(3);
const VALUE_LIST = len(6);
const LIST_VALUES = len(1);

function writeHeaderOption(w: ProtoWriter, tag: number, header: Header): void {
  const option = w.open(tag);
  const value = w.open(OPTION_HEADER);
  // proto3 strings: empty is unset.
  if (header[0] !== "") w.string(HEADER_KEY, header[0]);
  if (header[1] !== "") w.string(HEADER_VALUE, header[1]);
  w.close(value);
  w.varint(OPTION_APPEND_ACTION);
  w.varint(OVERWRITE);
  w.close(option);
}

function writeMetadata(w: ProtoWriter, entries: readonly MetadataEntry[]): void {
  const struct = w.open(RESPONSE_METADATA);
  for (const [name, value] of entries) {
    const entry = w.open(STRUCT_FIELDS);
    w.string(ENTRY_KEY, name);
    const v = w.open(ENTRY_VALUE);
    // A oneof member: written even when empty.
    if (typeof value === "string") {
      w.string(VALUE_STRING, value);
    } else {
      const list = w.open(VALUE_LIST);
      for (const item of value) {
        const element = w.open(LIST_VALUES);
        w.string(VALUE_STRING, item);
        w.close(element);
      }
      w.close(list);
    }
    w.close(v);
    w.close(entry);
  }
  w.close(struct);
}

// One writer, reused: encoding is synchronous and the bytes are copied out.
const writer = new ProtoWriter();

/** Encodes envoy.service.auth.v3.CheckResponse for a result, as ext-authz.ts's checkResponseOf builds it. */
export function encodeCheckResponse(result: CheckResult): Uint8Array {
  return encodeInto(result, 0);
}

// Frames of shared results (see CheckAllow.shared), written once.
const sharedFrames = new WeakMap<CheckResult, Buffer>();

/** The same as a gRPC frame (uncompressed flag + length prefix) in one buffer. */
export function encodeCheckResponseFrame(result: CheckResult): Buffer {
  if (result.shared) {
    let frame = sharedFrames.get(result);
    if (frame === undefined) sharedFrames.set(result, (frame = encodeInto(result, 5)));
    return frame;
  }
  return encodeInto(result, 5);
}

/** Encodes after `offset` bytes; with offset 5 those are the gRPC frame prefix. */
function encodeInto(result: CheckResult, offset: number): Buffer {
  const w = writer;
  w.pos = offset;
  const status = w.open(RESPONSE_STATUS);
  if (result.allowed) {
    // status {code: 0}: present but empty.
    w.close(status);
    const ok = w.open(RESPONSE_OK);
    const base = result.base && baseBytes(result.base);
    if (base) {
      w.bytes(base.ok);
    } else {
      writeOkRequestParts(w, result);
    }
    for (const header of result.responseHeaders) writeHeaderOption(w, OK_RESPONSE_HEADERS_TO_ADD, header);
    w.close(ok);
    if (base) {
      w.bytes(base.metadata);
      return finish(w, offset);
    }
  } else {
    if (result.rpcCode !== 0) {
      w.varint(STATUS_CODE);
      w.varint(result.rpcCode);
    }
    if (result.message !== "") w.string(STATUS_MESSAGE, result.message);
    w.close(status);
    const denied = w.open(RESPONSE_DENIED);
    const httpStatus = w.open(DENIED_STATUS);
    if (result.status !== 0) {
      w.varint(HTTP_STATUS_CODE);
      w.varint(result.status);
    }
    w.close(httpStatus);
    for (const header of result.headers) writeHeaderOption(w, DENIED_HEADERS, header);
    if (result.body !== "") w.string(DENIED_BODY, result.body);
    w.close(denied);
  }
  writeMetadata(w, result.metadata);
  return finish(w, offset);
}

/** ok_response's headers and headers_to_remove (its fields before response_headers_to_add). */
function writeOkRequestParts(w: ProtoWriter, result: CheckAllow): void {
  for (const header of result.headers) writeHeaderOption(w, OK_HEADERS, header);
  for (const name of result.headersToRemove) w.string(OK_HEADERS_TO_REMOVE, name);
}

// The bytes of a shared allow's parts that results built on it reuse (CheckAllow.base).
const baseParts = new WeakMap<CheckAllow, { ok: Buffer; metadata: Buffer }>();

function baseBytes(base: CheckAllow): { ok: Buffer; metadata: Buffer } {
  let parts = baseParts.get(base);
  if (parts === undefined) {
    // Own writers: the shared one is in the middle of an answer.
    const ok = new ProtoWriter(256);
    writeOkRequestParts(ok, base);
    const metadata = new ProtoWriter(256);
    writeMetadata(metadata, base.metadata);
    parts = { ok: Buffer.from(ok.buf.subarray(0, ok.pos)), metadata: Buffer.from(metadata.buf.subarray(0, metadata.pos)) };
    baseParts.set(base, parts);
  }
  return parts;
}

function finish(w: ProtoWriter, offset: number): Buffer {
  if (offset === 5) {
    w.buf[0] = 0;
    w.buf.writeUInt32BE(w.pos - 5, 1);
  }
  const out = Buffer.allocUnsafe(w.pos);
  w.buf.copy(out, 0, 0, w.pos);
  return out;
}
