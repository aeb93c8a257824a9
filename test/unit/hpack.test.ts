// HPACK: the decoder against RFC 7541's Appendix C examples (one decoder per
// sequence, so its dynamic table evolves as the RFC's does), its errors, the
// header-list limit, and the stateless encoder round-tripping through it.
import { describe, expect, it } from "vitest";
import { encodeHeaderBlock, encodeTableSizeUpdate, HpackDecoder, HpackError, huffmanDecode } from "../../src/transport/h2/hpack.js";

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ""), "hex");

function decodeAll(decoder: HpackDecoder, block: Buffer, limit = 1 << 20): { fields: [string, string][]; fits: boolean } {
  const fields: [string, string][] = [];
  const fits = decoder.decode(block, 0, block.length, { field: (name, value) => fields.push([name, value]) }, limit);
  return { fields, fits };
}

describe("RFC 7541 Appendix C", () => {
  it("C.3: requests without Huffman coding", () => {
    const d = new HpackDecoder();
    expect(decodeAll(d, hex("8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d")).fields).toEqual([
      [":method", "GET"],
      [":scheme", "http"],
      [":path", "/"],
      [":authority", "www.example.com"],
    ]);
    expect(decodeAll(d, hex("8286 84be 5808 6e6f 2d63 6163 6865")).fields).toEqual([
      [":method", "GET"],
      [":scheme", "http"],
      [":path", "/"],
      [":authority", "www.example.com"],
      ["cache-control", "no-cache"],
    ]);
    expect(decodeAll(d, hex("8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65")).fields).toEqual([
      [":method", "GET"],
      [":scheme", "https"],
      [":path", "/index.html"],
      [":authority", "www.example.com"],
      ["custom-key", "custom-value"],
    ]);
  });

  it("C.4: requests with Huffman coding", () => {
    const d = new HpackDecoder();
    expect(decodeAll(d, hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff")).fields).toEqual([
      [":method", "GET"],
      [":scheme", "http"],
      [":path", "/"],
      [":authority", "www.example.com"],
    ]);
    expect(decodeAll(d, hex("8286 84be 5886 a8eb 1064 9cbf")).fields.at(-1)).toEqual(["cache-control", "no-cache"]);
    expect(decodeAll(d, hex("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf")).fields.at(-1)).toEqual(["custom-key", "custom-value"]);
  });

  it("C.6: responses with Huffman coding and evictions from a 256-byte table", () => {
    const d = new HpackDecoder(256);
    expect(
      decodeAll(d, hex("4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3"))
        .fields,
    ).toEqual([
      [":status", "302"],
      ["cache-control", "private"],
      ["date", "Mon, 21 Oct 2013 20:13:21 GMT"],
      ["location", "https://www.example.com"],
    ]);
    // ":status: 307" evicts ":status: 302"; "cache-control" etc. are now at 63+.
    expect(decodeAll(d, hex("4883 640e ff c1 c0 bf")).fields).toEqual([
      [":status", "307"],
      ["cache-control", "private"],
      ["date", "Mon, 21 Oct 2013 20:13:21 GMT"],
      ["location", "https://www.example.com"],
    ]);
  });
});

describe("decoder errors", () => {
  it.each([
    ["index 0", "80"],
    ["an index beyond the tables", "be"],
    ["a truncated string", "00 05 6162"],
    ["a truncated integer", "ff"],
    ["an integer too long", "ff ffffffffffff 01"],
    ["Huffman padding that is not EOS's prefix", "00 81 00"],
    ["a table size update above the limit", "3fe1 ff03"],
    ["a table size update after a field", "82 20"],
  ])("rejects %s", (_name, bytes) => {
    expect(() => decodeAll(new HpackDecoder(), hex(bytes))).toThrow(HpackError);
  });

  it("rejects EOS inside a Huffman string, and more than 7 bits of padding", () => {
    // EOS is 30 one-bits: a whole byte of ones and more is never valid padding.
    expect(() => huffmanDecode(hex("ffffffff"), 0, 4)).toThrow(HpackError);
    expect(() => huffmanDecode(hex("1f ff"), 0, 2)).toThrow(HpackError); // "a" then 11 one-bits
    expect(huffmanDecode(hex("1f"), 0, 1)).toBe("a"); // "a" (00011) then 3 one-bits of padding
  });

  it("a table size update to 0 empties the dynamic table", () => {
    const d = new HpackDecoder();
    decodeAll(d, hex("400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65"));
    expect(decodeAll(d, hex("be")).fields).toEqual([["custom-key", "custom-value"]]);
    decodeAll(d, encodeTableSizeUpdate(0));
    expect(() => decodeAll(d, hex("be"))).toThrow(HpackError);
  });
});

describe("the header list limit", () => {
  it("stops yielding fields past the limit but decodes the block to its end, keeping the table in step", () => {
    const d = new HpackDecoder();
    // One 3,000-byte value added to the table, then referenced 1,000 times: 3 MB from ~1 KB.
    const big = "v".repeat(3000);
    const insert = Buffer.concat([hex("40"), Buffer.from([0x01]), Buffer.from("x"), hex("7f"), Buffer.from([(3000 - 127) & 0x7f | 0x80, (3000 - 127) >> 7]), Buffer.from(big)]);
    const bomb = Buffer.concat([insert, Buffer.alloc(1000, 0xbe)]);
    const { fields, fits } = decodeAll(d, bomb, 16 * 1024);
    expect(fits).toBe(false);
    expect(fields.length).toBe(5); // 5 × 3,033 bytes fit in 16 KiB
    // The table still holds the entry, as the peer's encoder assumes.
    expect(decodeAll(d, hex("be")).fields).toEqual([["x", big]]);
  });
});

describe("encodeHeaderBlock", () => {
  it("round-trips through the decoder: static matches, static names, new names and long values", () => {
    const fields: [string, string][] = [
      [":status", "200"],
      [":status", "431"],
      ["content-type", "application/grpc"],
      ["grpc-status", "0"],
      ["grpc-message", "é%20 and a long message ".repeat(20)],
      ["x-empty", ""],
    ];
    const block = encodeHeaderBlock(fields);
    expect(block[0]).toBe(0x88); // ":status: 200" is static index 8
    expect(decodeAll(new HpackDecoder(), block).fields).toEqual(fields);
  });
});
