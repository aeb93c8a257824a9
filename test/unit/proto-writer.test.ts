import { BinaryWriter } from "@bufbuild/protobuf/wire";
import { describe, expect, it } from "vitest";
import { ProtoWriter, varintSize } from "../../src/transport/proto-writer.js";

// Edges of each varint length, and of the 2^31 switch between bit operations and arithmetic.
const VALUES = [0, 1, 0x7f, 0x80, 0x3fff, 0x4000, 0x1f_ffff, 0x20_0000, 0x0fff_ffff, 0x1000_0000, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 35, 2 ** 53 - 1];

describe("ProtoWriter.varint", () => {
  it.each(VALUES)("writes %d as protobuf-es does, in varintSize bytes", (v) => {
    const w = new ProtoWriter(1);
    w.varint(v);
    const expected = new BinaryWriter().uint64(v).finish();
    expect(Buffer.from(w.buf.subarray(0, w.pos)).toString("hex")).toBe(Buffer.from(expected).toString("hex"));
    expect(varintSize(v)).toBe(expected.length);
  });
});
