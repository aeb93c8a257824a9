import { describe, expect, it } from "vitest";
import {
  createKeyHasher,
  digestOfHex,
  hexOfDigest,
  generateKey,
  isValidPrefix,
  isWellFormedKey,
  MAX_KEY_LENGTH,
  SECRET_LENGTH,
} from "../../src/core/key-format.js";

describe("key format", () => {
  it("generates <prefix>_<38 base62 chars> with the default prefix kw", () => {
    const { key, displayPrefix } = generateKey();
    expect(key).toMatch(/^kw_[0-9A-Za-z]{38}$/);
    expect(key.length).toBe(3 + SECRET_LENGTH);
    expect(displayPrefix).toBe(key.slice(0, 7));
    expect(isWellFormedKey(key)).toBe(true);
  });

  it("accepts multi-word prefixes such as sk_live", () => {
    const { key, displayPrefix } = generateKey("sk_live");
    expect(key.startsWith("sk_live_")).toBe(true);
    expect(displayPrefix).toMatch(/^sk_live_[0-9A-Za-z]{4}$/);
    expect(isWellFormedKey(key)).toBe(true);
  });

  it("never repeats a secret", () => {
    const seen = new Set(Array.from({ length: 2000 }, () => generateKey().key));
    expect(seen.size).toBe(2000);
  });

  it("rejects every single-character typo through the checksum", () => {
    const { key } = generateKey();
    let rejected = 0;
    let tried = 0;
    for (let i = 3; i < key.length; i++) {
      const replacement = key[i] === "a" ? "b" : "a";
      const typo = key.slice(0, i) + replacement + key.slice(i + 1);
      tried++;
      if (!isWellFormedKey(typo)) rejected++;
    }
    expect(rejected).toBe(tried);
    // A swapped prefix is a different key too.
    expect(isWellFormedKey(`kx${key.slice(2)}`)).toBe(false);
  });

  it("rejects malformed input without throwing", () => {
    for (const bad of ["", "kw_", "kw", "nounderscore", "KW_" + "a".repeat(38), "kw_" + "a".repeat(37), "kw_" + "!".repeat(38), "x".repeat(10_000), "kw_" + "a".repeat(38) + "\0"]) {
      expect(isWellFormedKey(bad)).toBe(false);
    }
    expect(MAX_KEY_LENGTH).toBeLessThan(100);
  });

  it("validates prefixes", () => {
    expect(isValidPrefix("kw")).toBe(true);
    expect(isValidPrefix("sk_live")).toBe(true);
    expect(isValidPrefix("a1_b2_c3")).toBe(true);
    for (const bad of ["", "_kw", "kw_", "Kw", "sk__live", "sk-live", "1kw", "a".repeat(33)]) {
      expect(isValidPrefix(bad)).toBe(false);
    }
    expect(() => generateKey("Bad")).toThrow();
  });

  it("hashes with SHA-256, or HMAC-SHA256 when a pepper is set", () => {
    const plain = createKeyHasher();
    const peppered = createKeyHasher("key");
    expect(plain("abc")).toBe("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    expect(peppered("The quick brown fox jumps over the lazy dog")).toBe(
      "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8",
    );
  });

  it("gives the cache's latin1 digest of the same hash, convertible both ways", () => {
    for (const pepper of [undefined, "key"]) {
      const key = generateKey().key;
      const hex = createKeyHasher(pepper)(key);
      const digest = createKeyHasher(pepper, "latin1")(key);
      expect(digest).toHaveLength(32);
      expect(digestOfHex(hex)).toBe(digest);
      expect(hexOfDigest(digest)).toBe(hex);
    }
  });
});
