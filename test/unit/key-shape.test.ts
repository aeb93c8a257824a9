// isWellFormedKey is a hand-rolled single pass (JS CRC-32, character tables);
// it must accept exactly what the plain definition accepts.
import { crc32 } from "node:zlib";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { CHECKSUM_LENGTH, generateKey, isWellFormedKey, MAX_KEY_LENGTH, SECRET_LENGTH } from "../../src/core/key-format.js";

const ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/** The definition: `<prefix>_<base62 secret>`, prefix words of [a-z0-9] starting with a letter, base62 CRC-32 checksum. */
function reference(key: string): boolean {
  if (key.length > MAX_KEY_LENGTH || key.length < SECRET_LENGTH + 2) return false;
  const sep = key.length - SECRET_LENGTH - 1;
  if (key[sep] !== "_") return false;
  if (!/^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$/.test(key.slice(0, sep)) || !/^[0-9A-Za-z]+$/.test(key.slice(sep + 1))) return false;
  let n = crc32(key.slice(0, key.length - CHECKSUM_LENGTH));
  let sum = "";
  for (let i = 0; i < CHECKSUM_LENGTH; i++) {
    sum = ALPHABET[n % 62] + sum;
    n = Math.floor(n / 62);
  }
  return sum === key.slice(key.length - CHECKSUM_LENGTH);
}

const prefix = fc.constantFrom("kw", "sk_live", "a", "x1_y2_z3", "abcdefghijklmnopqrstuvwxyz012345");
const validKey = prefix.map((p) => generateKey(p).key);
const edit = fc.tuple(fc.nat(), fc.oneof(fc.constantFrom("_", "-", "A", "z", "0", "é", "\u212a", "\u0100", "__", ""), fc.string({ maxLength: 2 })));
/** Valid keys with a few characters replaced, inserted or deleted. */
const mutated = fc.tuple(validKey, fc.array(edit, { minLength: 1, maxLength: 3 })).map(([key, edits]) => {
  let out = key;
  for (const [at, text] of edits) {
    const i = at % (out.length + 1);
    out = out.slice(0, i) + text + out.slice(i + (at % 3 === 0 ? 0 : 1));
  }
  return out;
});

describe("isWellFormedKey", () => {
  it("accepts every generated key", () => {
    fc.assert(fc.property(validKey, (key) => {
        expect(isWellFormedKey(key)).toBe(true);
      }), { numRuns: 2000 });
  });

  it("agrees with the definition on damaged keys and arbitrary strings", () => {
    fc.assert(
      fc.property(fc.oneof(mutated, fc.string({ maxLength: 80 }), fc.string({ minLength: 40, maxLength: 72, unit: "binary-ascii" })), (s) => {
        expect(isWellFormedKey(s)).toBe(reference(s));
      }),
      { numRuns: 20_000 },
    );
  });

  it("rejects malformed prefixes whose checksum is right", () => {
    // Shape errors the checksum alone would not catch: the checksum is computed over the bad text.
    const withChecksum = (head: string) => {
      let n = crc32(head);
      let sum = "";
      for (let i = 0; i < CHECKSUM_LENGTH; i++) {
        sum = ALPHABET[n % 62] + sum;
        n = Math.floor(n / 62);
      }
      return head + sum;
    };
    const body = "A".repeat(SECRET_LENGTH - CHECKSUM_LENGTH);
    expect(isWellFormedKey(withChecksum(`kw_${body}`))).toBe(true);
    for (const bad of ["Kw", "1kw", "k__w", "kw_", "_kw", "k-w", "kÉ"]) {
      expect(isWellFormedKey(withChecksum(`${bad}_${body}`))).toBe(false);
      expect(reference(withChecksum(`${bad}_${body}`))).toBe(false);
    }
  });
});
