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

/** Decodes keyward.v1.VerifyRequest; rejects truncation, bad wire types and invalid UTF-8. */
export function decodeVerifyRequest(bytes: Uint8Array): VerifyInput {
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;
  const end = buf.length;
  let key = "";
  const requiredScopes: string[] = [];

  const varint = (): number => {
    let result = 0;
    let shift = 0;
    for (let i = 0; i < 10; i++) {
      if (pos >= end) throw malformed();
      const b = buf[pos++]!;
      // Beyond 2^53 precision is lost, but such values only occur in skipped fields or lengths we reject.
      result += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return result;
      shift += 7;
    }
    throw malformed();
  };
  const text = (length: number): string => {
    const start = pos;
    const stop = start + length;
    if (stop > end) throw malformed();
    pos = stop;
    let ascii = true;
    for (let i = start; i < stop; i++) {
      if (buf[i]! >= 0x80) {
        ascii = false;
        break;
      }
    }
    if (ascii) return buf.toString("latin1", start, stop);
    try {
      return utf8.decode(buf.subarray(start, stop));
    } catch {
      throw invalidArgument("request contains invalid UTF-8");
    }
  };

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
}



/** google.protobuf.Timestamp body for epoch ms (non-negative times only, as keyward produces). */
function timestampBody(ms: number): { seconds: number; nanos: number } {
  const seconds = Math.floor(ms / 1000);
  return { seconds, nanos: (ms - seconds * 1000) * 1_000_000 };
}

function timestampSize(ms: number): number {
  const { seconds, nanos } = timestampBody(ms);
  return (seconds ? 1 + varintSize(seconds) : 0) + (nanos ? 1 + varintSize(nanos) : 0);
}

function writeTimestampField(w: ProtoWriter, tag: number, ms: number): void {
  const { seconds, nanos } = timestampBody(ms);
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

/** Encodes keyward.v1.VerifyResponse for a decision; `pending` adds usage not yet written. */
export function encodeVerifyResponse(decision: Decision, pending: PendingUsage | undefined): Uint8Array {
  const w = writeVerifyResponse(new ProtoWriter(256), decision, pending);
  return w.buf.subarray(0, w.pos);
}

/** The same, as a gRPC frame (uncompressed flag + length prefix) in one buffer. */
export function encodeVerifyResponseFrame(decision: Decision, pending: PendingUsage | undefined): Buffer {
  const w = new ProtoWriter(256);
  w.pos = 5;
  writeVerifyResponse(w, decision, pending);
  w.buf[0] = 0;
  w.buf.writeUInt32BE(w.pos - 5, 1);
  return w.buf.subarray(0, w.pos);
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
