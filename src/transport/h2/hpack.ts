// HPACK (RFC 7541) for keyward's HTTP/2 server: a decoder with its dynamic
// table, and a stateless encoder (literals and static-table indexes only, so
// answers need no per-connection encoder state and can be pre-encoded).
import { HUFFMAN_CODES } from "./huffman-codes.js";

export class HpackError extends Error {}

/** RFC 7541 Appendix A. */
export const STATIC_TABLE: readonly (readonly [string, string])[] = [
  [":authority", ""],
  [":method", "GET"],
  [":method", "POST"],
  [":path", "/"],
  [":path", "/index.html"],
  [":scheme", "http"],
  [":scheme", "https"],
  [":status", "200"],
  [":status", "204"],
  [":status", "206"],
  [":status", "304"],
  [":status", "400"],
  [":status", "404"],
  [":status", "500"],
  ["accept-charset", ""],
  ["accept-encoding", "gzip, deflate"],
  ["accept-language", ""],
  ["accept-ranges", ""],
  ["accept", ""],
  ["access-control-allow-origin", ""],
  ["age", ""],
  ["allow", ""],
  ["authorization", ""],
  ["cache-control", ""],
  ["content-disposition", ""],
  ["content-encoding", ""],
  ["content-language", ""],
  ["content-length", ""],
  ["content-location", ""],
  ["content-range", ""],
  ["content-type", ""],
  ["cookie", ""],
  ["date", ""],
  ["etag", ""],
  ["expect", ""],
  ["expires", ""],
  ["from", ""],
  ["host", ""],
  ["if-match", ""],
  ["if-modified-since", ""],
  ["if-none-match", ""],
  ["if-range", ""],
  ["if-unmodified-since", ""],
  ["last-modified", ""],
  ["link", ""],
  ["location", ""],
  ["max-forwards", ""],
  ["proxy-authenticate", ""],
  ["proxy-authorization", ""],
  ["range", ""],
  ["referer", ""],
  ["refresh", ""],
  ["retry-after", ""],
  ["server", ""],
  ["set-cookie", ""],
  ["strict-transport-security", ""],
  ["transfer-encoding", ""],
  ["user-agent", ""],
  ["vary", ""],
  ["via", ""],
  ["www-authenticate", ""],
];

// Huffman decoding four bits at a time: a state is an inner node of the code
// tree; each (state, nibble) gives the next state and at most one symbol,
// since no code is shorter than five bits.
const NO_SYMBOL = 256;
const FAIL = 257;
const { huffNext, huffEmit, huffAccept } = (() => {
  const left: number[] = [];
  const right: number[] = [];
  const symbol: number[] = [];
  const node = () => (left.push(-1), right.push(-1), symbol.push(-1), symbol.length - 1);
  node();
  HUFFMAN_CODES.forEach(([bits, code], sym) => {
    let n = 0;
    for (let i = bits - 1; i >= 0; i--) {
      const side = (code >>> i) & 1 ? right : left;
      if (side[n] === -1) side[n] = node();
      n = side[n]!;
    }
    symbol[n] = sym;
  });
  const inner: number[] = [];
  const stateOf = new Int32Array(symbol.length).fill(-1);
  for (let n = 0; n < symbol.length; n++) if (symbol[n] === -1) stateOf[n] = inner.push(n) - 1;
  // Padding is a prefix of EOS (all ones) of at most 7 bits: the states reached
  // from the root by up to seven 1-bits may end a string.
  const accept = new Uint8Array(inner.length);
  for (let d = 0, n = 0; d <= 7; d++, n = right[n]!) accept[stateOf[n]!] = 1;
  const next = new Uint16Array(inner.length * 16);
  const emit = new Uint16Array(inner.length * 16);
  for (let s = 0; s < inner.length; s++) {
    for (let nibble = 0; nibble < 16; nibble++) {
      let n = inner[s]!;
      let out = NO_SYMBOL;
      for (let i = 3; i >= 0 && out !== FAIL; i--) {
        n = (nibble >>> i) & 1 ? right[n]! : left[n]!;
        if (symbol[n] === -1) continue;
        // EOS inside a string is an error (RFC 7541 5.2).
        out = symbol[n] === 256 || out !== NO_SYMBOL ? FAIL : symbol[n]!;
        n = 0;
      }
      next[s * 16 + nibble] = out === FAIL ? 0 : stateOf[n]!;
      emit[s * 16 + nibble] = out;
    }
  }
  return { huffNext: next, huffEmit: emit, huffAccept: accept };
})();

let scratch = Buffer.allocUnsafe(4096);

export function huffmanDecode(buf: Buffer, start: number, end: number): string {
  // A symbol takes at least five bits: at most 8/5 symbols per byte.
  const most = Math.ceil(((end - start) * 8) / 5);
  if (scratch.length < most) scratch = Buffer.allocUnsafe(Math.max(most, scratch.length * 2));
  const out = scratch;
  let state = 0;
  let o = 0;
  for (let i = start; i < end; i++) {
    const byte = buf[i]!;
    let k = state * 16 + (byte >>> 4);
    let sym = huffEmit[k]!;
    if (sym !== NO_SYMBOL) {
      if (sym === FAIL) throw new HpackError("invalid Huffman code");
      out[o++] = sym;
    }
    state = huffNext[k]!;
    k = state * 16 + (byte & 15);
    sym = huffEmit[k]!;
    if (sym !== NO_SYMBOL) {
      if (sym === FAIL) throw new HpackError("invalid Huffman code");
      out[o++] = sym;
    }
    state = huffNext[k]!;
  }
  if (huffAccept[state] !== 1) throw new HpackError("invalid Huffman padding");
  return out.toString("latin1", 0, o);
}

/** Receives a block's fields in order. */
export interface HeaderSink {
  field(name: string, value: string): void;
}

const ENTRY_OVERHEAD = 32;

/**
 * Decodes header blocks, keeping the dynamic table in step with the peer's
 * encoder. A block whose decoded list would pass maxListBytes is still decoded
 * to its end (the table must stay in sync) but yields no more fields, and
 * decode() returns false: an HPACK bomb costs table lookups, not memory.
 */
export class HpackDecoder {
  // Ring buffer, newest entry at `head`.
  private names: string[] = new Array(16);
  private values: string[] = new Array(16);
  private head = 0;
  private count = 0;
  private size = 0;
  private maxSize: number;

  constructor(
    /** SETTINGS_HEADER_TABLE_SIZE we advertise: the most the peer may ask for. */
    private readonly limit = 4096,
  ) {
    this.maxSize = limit;
  }

  decode(buf: Buffer, start: number, end: number, sink: HeaderSink, maxListBytes: number): boolean {
    let p = start;
    let listBytes = 0;
    let fields = 0;
    const readInt = (prefixBits: number): number => {
      const max = (1 << prefixBits) - 1;
      let value = buf[p++]! & max;
      if (value < max) return value;
      let shift = 0;
      let b: number;
      do {
        if (p >= end) throw new HpackError("truncated integer");
        if (shift > 28) throw new HpackError("integer too long");
        b = buf[p++]!;
        value += (b & 0x7f) * 2 ** shift;
        shift += 7;
        if (value > 0x7fffffff) throw new HpackError("integer overflow");
      } while (b & 0x80);
      return value;
    };
    const readString = (): string => {
      if (p >= end) throw new HpackError("truncated string");
      const huffman = buf[p]! & 0x80;
      const length = readInt(7);
      if (length > end - p) throw new HpackError("truncated string");
      const s = huffman ? huffmanDecode(buf, p, p + length) : buf.toString("latin1", p, p + length);
      p += length;
      return s;
    };
    const emit = (name: string, value: string) => {
      listBytes += name.length + value.length + ENTRY_OVERHEAD;
      if (listBytes <= maxListBytes) sink.field(name, value);
    };
    while (p < end) {
      const b = buf[p]!;
      if (b & 0x80) {
        const index = readInt(7);
        emit(this.nameAt(index), this.valueAt(index));
      } else if (b & 0x40) {
        const index = readInt(6);
        const name = index === 0 ? readString() : this.nameAt(index);
        const value = readString();
        this.insert(name, value);
        emit(name, value);
      } else if (b & 0x20) {
        // Table size updates only open a block (RFC 7541 4.2).
        if (fields > 0) throw new HpackError("dynamic table size update after a field");
        const size = readInt(5);
        if (size > this.limit) throw new HpackError("dynamic table size update above the limit");
        this.maxSize = size;
        this.evict(0);
        continue;
      } else {
        // Literal without indexing (0000) or never indexed (0001).
        const index = readInt(4);
        const name = index === 0 ? readString() : this.nameAt(index);
        emit(name, readString());
      }
      fields++;
    }
    return listBytes <= maxListBytes;
  }

  private entry(index: number): number {
    if (index === 0) throw new HpackError("index 0");
    const i = index - STATIC_TABLE.length - 1;
    if (i >= this.count) throw new HpackError("index beyond the table");
    return (this.head + i) & (this.names.length - 1);
  }

  private nameAt(index: number): string {
    return index <= STATIC_TABLE.length ? (index === 0 ? this.fail() : STATIC_TABLE[index - 1]![0]) : this.names[this.entry(index)]!;
  }

  private valueAt(index: number): string {
    return index <= STATIC_TABLE.length ? (index === 0 ? this.fail() : STATIC_TABLE[index - 1]![1]) : this.values[this.entry(index)]!;
  }

  private fail(): never {
    throw new HpackError("index 0");
  }

  private insert(name: string, value: string): void {
    const entrySize = name.length + value.length + ENTRY_OVERHEAD;
    // An entry larger than the table empties it and is not added (RFC 7541 4.4).
    this.evict(entrySize);
    if (entrySize > this.maxSize) return;
    if (this.count === this.names.length) this.grow();
    this.head = (this.head - 1) & (this.names.length - 1);
    this.names[this.head] = name;
    this.values[this.head] = value;
    this.count++;
    this.size += entrySize;
  }

  private evict(room: number): void {
    while (this.count > 0 && this.size + room > this.maxSize) {
      const last = (this.head + this.count - 1) & (this.names.length - 1);
      this.size -= this.names[last]!.length + this.values[last]!.length + ENTRY_OVERHEAD;
      this.names[last] = this.values[last] = undefined as unknown as string;
      this.count--;
    }
  }

  private grow(): void {
    const n = this.names.length;
    const names = new Array<string>(n * 2);
    const values = new Array<string>(n * 2);
    for (let i = 0; i < this.count; i++) {
      names[i] = this.names[(this.head + i) & (n - 1)]!;
      values[i] = this.values[(this.head + i) & (n - 1)]!;
    }
    this.names = names;
    this.values = values;
    this.head = 0;
  }
}

const staticNameIndex = new Map<string, number>();
const staticFieldIndex = new Map<string, number>();
STATIC_TABLE.forEach(([name, value], i) => {
  if (!staticNameIndex.has(name)) staticNameIndex.set(name, i + 1);
  if (value !== "") staticFieldIndex.set(`${name}\0${value}`, i + 1);
});

function pushInt(out: number[], value: number, prefixBits: number, first: number): void {
  const max = (1 << prefixBits) - 1;
  if (value < max) {
    out.push(first | value);
    return;
  }
  out.push(first | max);
  value -= max;
  while (value >= 0x80) {
    out.push((value & 0x7f) | 0x80);
    value = Math.floor(value / 128);
  }
  out.push(value);
}

function pushString(out: number[], text: string): void {
  const bytes = Buffer.from(text, "latin1");
  pushInt(out, bytes.length, 7, 0);
  for (const b of bytes) out.push(b);
}

/**
 * Encodes a header block without touching the dynamic table: static-table
 * matches as indexes, everything else as literals without indexing. Names
 * must be lowercase; values are sent as latin1.
 */
export function encodeHeaderBlock(fields: Iterable<readonly [string, string]>): Buffer {
  const out: number[] = [];
  for (const [name, value] of fields) {
    const full = staticFieldIndex.get(`${name}\0${value}`);
    if (full !== undefined) {
      pushInt(out, full, 7, 0x80);
      continue;
    }
    const nameIndex = staticNameIndex.get(name);
    if (nameIndex !== undefined) pushInt(out, nameIndex, 4, 0);
    else {
      out.push(0);
      pushString(out, name);
    }
    pushString(out, value);
  }
  return Buffer.from(out);
}

/** A dynamic table size update (RFC 7541 6.3), to open the next block after the peer lowers its table size. */
export function encodeTableSizeUpdate(size: number): Buffer {
  const out: number[] = [];
  pushInt(out, size, 5, 0x20);
  return Buffer.from(out);
}
