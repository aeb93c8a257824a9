// API key format: `<prefix>_<body><checksum>`.
// - prefix: lowercase letters/digits in `_`-separated words (`kw`, `sk_live`).
// - body: 32 base62 characters from crypto.randomBytes (~190 bits).
// - checksum: CRC-32 of `<prefix>_<body>` as 6 base62 characters, so a typo or a
//   random string is rejected before any cache or database work.
import { createHmac, hash, randomBytes } from "node:crypto";
import { crc32 } from "node:zlib";

const ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
export const BODY_LENGTH = 32;
export const CHECKSUM_LENGTH = 6;
export const SECRET_LENGTH = BODY_LENGTH + CHECKSUM_LENGTH;
export const MAX_PREFIX_LENGTH = 32;
/** Keys longer than this are rejected before hashing. */
export const MAX_KEY_LENGTH = MAX_PREFIX_LENGTH + 1 + SECRET_LENGTH;
/** How many secret characters ApiKey.prefix shows, to recognise a key. */
export const VISIBLE_SECRET_CHARS = 4;
export const DEFAULT_PREFIX = "kw";

const PREFIX_RE = /^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$/;
const SECRET_RE = /^[0-9A-Za-z]+$/;

export function isValidPrefix(prefix: string): boolean {
  return prefix.length <= MAX_PREFIX_LENGTH && PREFIX_RE.test(prefix);
}

export function randomBase62(length: number): string {
  let out = "";
  while (out.length < length) {
    // Rejection sampling keeps every character uniform: 248 = 4 * 62.
    for (const byte of randomBytes(length * 2)) {
      if (byte < 248) out += ALPHABET[byte % 62];
      if (out.length === length) break;
    }
  }
  return out;
}

function checksum(payload: string): string {
  let n = crc32(payload);
  let out = "";
  for (let i = 0; i < CHECKSUM_LENGTH; i++) {
    out = ALPHABET[n % 62] + out;
    n = Math.floor(n / 62);
  }
  return out;
}

export interface GeneratedKey {
  /** The plaintext key, shown once. */
  key: string;
  /** Prefix plus the first secret characters, safe to store and display. */
  displayPrefix: string;
}

export function generateKey(prefix: string = DEFAULT_PREFIX): GeneratedKey {
  if (!isValidPrefix(prefix)) throw new TypeError("invalid key prefix");
  const head = `${prefix}_${randomBase62(BODY_LENGTH)}`;
  const key = head + checksum(head);
  return { key, displayPrefix: key.slice(0, prefix.length + 1 + VISIBLE_SECRET_CHARS) };
}

/**
 * Cheap structural check: shape and checksum. False means the string cannot be
 * a key keyward issued, so no lookup is needed.
 */
export function isWellFormedKey(key: string): boolean {
  if (key.length > MAX_KEY_LENGTH || key.length < SECRET_LENGTH + 2) return false;
  const sep = key.length - SECRET_LENGTH - 1;
  if (key.charCodeAt(sep) !== 95 /* _ */) return false;
  const prefix = key.slice(0, sep);
  const secret = key.slice(sep + 1);
  if (!PREFIX_RE.test(prefix) || !SECRET_RE.test(secret)) return false;
  return checksum(key.slice(0, key.length - CHECKSUM_LENGTH)) === key.slice(key.length - CHECKSUM_LENGTH);
}

export type KeyHasher = (key: string) => string;

/** SHA-256, or HMAC-SHA256 with a server-side pepper, as lowercase hex. */
export function createKeyHasher(pepper?: string): KeyHasher {
  if (pepper) return (key) => createHmac("sha256", pepper).update(key).digest("hex");
  // One-shot hash: no Hash object per call on the hot path.
  return (key) => hash("sha256", key, "hex");
}
