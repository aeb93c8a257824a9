// Hand-written protobuf codec for the Verify hot path. Reflection-based
// fromBinary/toBinary and message creation cost more than the rest of a cache
// hit, so the lean gRPC path decodes VerifyRequest and encodes VerifyResponse
// here. The ApiKey part of a response is encoded once per cached key, when it
// is cached (packApiKey: the cache keeps those bytes instead of the fields
// they hold); only usage fields are appended per call. Tests check this codec
// against protobuf-es on random input, field for field.
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { invalidArgument } from "../core/errors.js";
import type { CachedKey, KeyRecord } from "../core/model.js";
import type { PendingUsage } from "../core/usage.js";
import type { Decision } from "../core/verifier.js";
import { ApiKeySchema, type ApiKey } from "../gen/keyward/v1/keys_pb.js";
import { apiKeyToProto, verifyCodeToProto } from "./convert.js";
import { ProtoWriter, varintSize } from "./proto-writer.js";

export interface VerifyInput {
  key: string;
  requiredScopes: string[];
}

// ignoreBOM keeps a leading U+FEFF as data, as protobuf requires.
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function malformed(): Error {
  return invalidArgument("request is not a valid keyward.v1.VerifyRequest message");
}

// The decoder's cursor lives at module level: decoding is synchronous, and
// closures over a per-call position cost an allocation each on the hot path.
const EMPTY = Buffer.alloc(0);
let buf: Buffer = EMPTY;
let pos = 0;
let end = 0;

function varint(): number {
  let result = 0;
  let scale = 1;
  for (let i = 0; i < 10; i++) {
    if (pos >= end) throw malformed();
    const b = buf[pos++]!;
    // Beyond 2^53 precision is lost, but such values only occur in skipped fields or lengths we reject.
    result += (b & 0x7f) * scale;
    if (b < 0x80) return result;
    scale *= 0x80;
  }
  throw malformed();
}

function text(length: number): string {
  const start = pos;
  const stop = start + length;
  if (stop > end) throw malformed();
  pos = stop;
  for (let i = start; i < stop; i++) {
    if (buf[i]! >= 0x80) {
      try {
        return utf8.decode(buf.subarray(start, stop));
      } catch {
        throw invalidArgument("request contains invalid UTF-8");
      }
    }
  }
  return buf.toString("latin1", start, stop);
}

/** Decodes keyward.v1.VerifyRequest; rejects truncation, bad wire types and invalid UTF-8. */
export function decodeVerifyRequest(bytes: Uint8Array): VerifyInput {
  buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  pos = 0;
  end = buf.length;
  try {
    let key = "";
    const requiredScopes: string[] = [];
    while (pos < end) {
      const tag = varint();
      const field = Math.floor(tag / 8);
      const wire = tag & 7;
      if (field === 0) throw malformed();
      if ((field === 1 || field === 2) && wire === 2) {
        const length = varint();
        if (field === 1) key = text(length);
        else requiredScopes.push(text(length));
        continue;
      }
      if (field === 1 || field === 2) throw malformed();
      // Unknown fields are skipped, as protobuf requires.
      switch (wire) {
        case 0:
          varint();
          break;
        case 1:
          pos += 8;
          break;
        case 2: {
          // Read the length first: `pos += varint()` would add to the old position.
          const length = varint();
          pos += length;
          break;
        }
        case 5:
          pos += 4;
          break;
        default:
          throw malformed();
      }
      if (pos > end) throw malformed();
    }
    return { key, requiredScopes };
  } finally {
    // Do not keep the request's bytes alive until the next call.
    buf = EMPTY;
  }
}


/** Seconds and nanos of a google.protobuf.Timestamp for epoch ms (non-negative times only, as keyward produces). */
const timestampSeconds = (ms: number): number => Math.floor(ms / 1000);
const timestampNanos = (ms: number): number => (ms - Math.floor(ms / 1000) * 1000) * 1_000_000;

function timestampSize(ms: number): number {
  const seconds = timestampSeconds(ms);
  const nanos = timestampNanos(ms);
  return (seconds ? 1 + varintSize(seconds) : 0) + (nanos ? 1 + varintSize(nanos) : 0);
}

function writeTimestampField(w: ProtoWriter, tag: number, ms: number): void {
  const seconds = timestampSeconds(ms);
  const nanos = timestampNanos(ms);
  w.varint(tag);
  w.varint(timestampSize(ms));
  if (seconds) {
    w.varint(0x08);
    w.varint(seconds);
  }
  if (nanos) {
    w.varint(0x10);
    w.varint(nanos);
  }
}

/**
 * The key cache's packer (CachedKey.packed): the record's keyward.v1.ApiKey
 * wire bytes without last_used_at and request_count, which are appended per
 * call. A latin1 string holds them one byte per character in the JS heap:
 * a small Buffer would be a slice of a shared 64 KiB pool slab, and slabs
 * were kept alive, mostly empty, by the long-lived slices (1.5 KB per key).
 */
export function packApiKey(record: KeyRecord): string {
  const apiKey = apiKeyToProto(record);
  apiKey.lastUsedAt = undefined;
  apiKey.requestCount = 0n;
  const encoded = toBinary(ApiKeySchema, apiKey);
  return Buffer.from(encoded.buffer, encoded.byteOffset, encoded.byteLength).toString("latin1");
}

/** The ApiKey message of a cached key (the Connect path), with usage not yet written added. */
export function cachedApiKeyToProto(key: CachedKey, pending?: PendingUsage): ApiKey {
  const apiKey = fromBinary(ApiKeySchema, Buffer.from(key.packed, "latin1"));
  let lastUsedAt = key.lastUsedAt;
  if (pending && (lastUsedAt === null || pending.lastUsedAt > lastUsedAt)) lastUsedAt = pending.lastUsedAt;
  apiKey.lastUsedAt = lastUsedAt === null ? undefined : timestampFromMs(lastUsedAt);
  apiKey.requestCount = BigInt(key.requestCount + (pending?.count ?? 0));
  return apiKey;
}

const TAG_LAST_USED_AT = (11 << 3) | 2;
const TAG_REQUEST_COUNT = 12 << 3;

// One writer, reused (encoding is synchronous); each answer is copied out at
// its exact size, so a call allocates one buffer and no writer.
const writer = new ProtoWriter(512);

function copyOut(w: ProtoWriter): Buffer {
  const out = Buffer.allocUnsafe(w.pos);
  w.buf.copy(out, 0, 0, w.pos);
  return out;
}

/** Encodes keyward.v1.VerifyResponse for a decision; `pending` adds usage not yet written. */
export function encodeVerifyResponse(decision: Decision, pending: PendingUsage | undefined): Uint8Array {
  writer.pos = 0;
  return copyOut(writeVerifyResponse(writer, decision, pending));
}

/** The same, as a gRPC frame (uncompressed flag + length prefix) in one buffer. */
export function encodeVerifyResponseFrame(decision: Decision, pending: PendingUsage | undefined): Buffer {
  const w = writer;
  w.pos = 5;
  writeVerifyResponse(w, decision, pending);
  w.buf[0] = 0;
  w.buf.writeUInt32BE(w.pos - 5, 1);
  return copyOut(w);
}

function writeVerifyResponse(w: ProtoWriter, decision: Decision, pending: PendingUsage | undefined): ProtoWriter {
  if (decision.code === "valid") {
    w.varint(0x08);
    w.varint(1);
  }
  w.varint(0x10);
  w.varint(verifyCodeToProto[decision.code]);
  const record = decision.key;
  if (record !== null) {
    const head = record.packed;
    // -1: never used (an epoch-0 time is still a set timestamp).
    let lastUsedAt = record.lastUsedAt === null ? -1 : record.lastUsedAt;
    if (pending !== undefined && pending.lastUsedAt > lastUsedAt) lastUsedAt = pending.lastUsedAt;
    const count = record.requestCount + (pending?.count ?? 0);
    const lastUsedSize = lastUsedAt >= 0 ? 1 + varintSize(timestampSize(lastUsedAt)) + timestampSize(lastUsedAt) : 0;
    const countSize = count ? 1 + varintSize(count) : 0;
    w.varint(0x1a);
    w.varint(head.length + lastUsedSize + countSize);
    w.ensure(head.length);
    w.pos += w.buf.write(head, w.pos, head.length, "latin1");
    if (lastUsedAt >= 0) writeTimestampField(w, TAG_LAST_USED_AT, lastUsedAt);
    if (count) {
      w.varint(TAG_REQUEST_COUNT);
      w.varint(count);
    }
  }
  const rl = decision.rateLimit;
  if (rl !== null) {
    const resetSize = timestampSize(rl.resetAt);
    const size =
      (rl.limit ? 1 + varintSize(rl.limit) : 0) +
      (rl.remaining ? 1 + varintSize(rl.remaining) : 0) +
      1 +
      varintSize(resetSize) +
      resetSize;
    w.varint(0x22);
    w.varint(size);
    if (rl.limit) {
      w.varint(0x08);
      w.varint(rl.limit);
    }
    if (rl.remaining) {
      w.varint(0x10);
      w.varint(rl.remaining);
    }
    writeTimestampField(w, 0x1a, rl.resetAt);
  }
  return w;
}
