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

// CRC-32 (IEEE, as zlib's crc32) by table over char codes: on the hot path
// zlib's crc32(string) pays for a string-to-bytes conversion first.
const CRC_TABLE = new Int32Array(256);
for (let n = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  CRC_TABLE[n] = c;
}

// Character classes by code: 1 base62 digit/letter, 2 also lowercase-or-digit (prefix), 4 lowercase letter.
const CLASS = new Uint8Array(128);
for (let c = 0; c < 128; c++) {
  const ch = String.fromCharCode(c);
  CLASS[c] = (/[0-9A-Za-z]/.test(ch) ? 1 : 0) | (/[0-9a-z]/.test(ch) ? 2 : 0) | (/[a-z]/.test(ch) ? 4 : 0);
}

/**
 * Cheap structural check: shape and checksum, in one pass without allocating.
 * False means the string cannot be a key keyward issued, so no lookup is needed.
 */
export function isWellFormedKey(key: string): boolean {
  const length = key.length;
  if (length > MAX_KEY_LENGTH || length < SECRET_LENGTH + 2) return false;
  const sep = length - SECRET_LENGTH - 1;
  const signed = length - CHECKSUM_LENGTH;
  let crc = -1;
  // Prefix: /^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$/ — words of [a-z0-9] joined by single underscores.
  let c = key.charCodeAt(0);
  if (c >= 128 || (CLASS[c]! & 4) === 0) return false;
  let afterUnderscore = false;
  for (let i = 0; i < signed; i++) {
    c = key.charCodeAt(i);
    if (c >= 128) return false;
    if (i < sep) {
      if (c === 95 /* _ */) {
        if (afterUnderscore) return false;
        afterUnderscore = true;
      } else if ((CLASS[c]! & 2) === 0) return false;
      else afterUnderscore = false;
    } else if (i === sep) {
      if (c !== 95 || afterUnderscore) return false;
    } else if ((CLASS[c]! & 1) === 0) return false;
    crc = CRC_TABLE[(crc ^ c) & 0xff]! ^ (crc >>> 8);
  }
  // The checksum: CRC-32 in CHECKSUM_LENGTH base62 digits, most significant first.
  let n = (crc ^ -1) >>> 0;
  for (let i = length - 1; i >= signed; i--) {
    c = key.charCodeAt(i);
    if (c >= 128 || (CLASS[c]! & 1) === 0 || c !== ALPHABET.charCodeAt(n % 62)) return false;
    n = Math.floor(n / 62);
  }
  return true;
}

export type KeyHasher = (key: string) => string;

/**
 * SHA-256, or HMAC-SHA256 with a server-side pepper, as lowercase hex (what is
 * stored), or with `latin1` as the 32 digest bytes one per character: the
 * verification cache's key, half the heap of the 64-character hex string.
 */
export function createKeyHasher(pepper?: string, encoding: "hex" | "latin1" = "hex"): KeyHasher {
  // "binary" is node:crypto's name for latin1.
  const out = encoding === "hex" ? "hex" : "binary";
  if (pepper) return (key) => createHmac("sha256", pepper).update(key).digest(out);
  // One-shot hash: no Hash object per call on the hot path.
  return (key) => hash("sha256", key, out);
}

/** The stored hex hash of a latin1 digest, and back. */
export const hexOfDigest = (digest: string): string => Buffer.from(digest, "latin1").toString("hex");
export const digestOfHex = (hex: string): string => Buffer.from(hex, "hex").toString("latin1");
