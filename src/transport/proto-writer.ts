// The small protobuf writer behind the hand-written hot-path codecs
// (verify-codec.ts, check-codec.ts): varints, raw bytes, and length-delimited
// fields whose length is filled in when they close.

/** An append-only protobuf writer whose nested messages get their length when closed. */
export class ProtoWriter {
  buf: Buffer;
  pos = 0;

  constructor(size = 1024) {
    this.buf = Buffer.allocUnsafe(size);
  }

  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  /** A non-negative integer below 2^53. */
  varint(v: number): void {
    this.ensure(10);
    const buf = this.buf;
    let pos = this.pos;
    // Below 2^31 (tags, lengths, times in seconds, nanos) bit operations are exact and cheaper.
    if (v < 0x8000_0000) {
      while (v > 0x7f) {
        buf[pos++] = (v & 0x7f) | 0x80;
        v >>>= 7;
      }
    } else {
      while (v >= 0x80) {
        buf[pos++] = (v % 0x80) | 0x80;
        v = Math.floor(v / 0x80);
      }
    }
    buf[pos++] = v;
    this.pos = pos;
  }

  /** Opens a length-delimited field (tag < 128): one length byte is reserved, widened by close(). */
  open(tag: number): number {
    this.ensure(2);
    this.buf[this.pos++] = tag;
    return this.pos++;
  }

  close(at: number): void {
    const length = this.pos - at - 1;
    if (length < 0x80) {
      this.buf[at] = length;
      return;
    }
    let extra = 0;
    for (let v = length; v >= 0x80; v = Math.floor(v / 0x80)) extra++;
    this.ensure(extra);
    this.buf.copyWithin(at + 1 + extra, at + 1, this.pos);
    const end = this.pos + extra;
    this.pos = at;
    this.varint(length);
    this.pos = end;
  }

  bytes(b: Uint8Array): void {
    this.ensure(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  /** A string field (tag < 128), written even when empty. */
  string(tag: number, s: string): void {
    const at = this.open(tag);
    this.ensure(s.length * 3);
    const buf = this.buf;
    let pos = this.pos;
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x80) {
        pos = this.pos + buf.write(s, this.pos, "utf8");
        break;
      }
      buf[pos++] = c;
    }
    this.pos = pos;
    this.close(at);
  }
}

/** Bytes a varint of `v` takes. */
export function varintSize(v: number): number {
  if (v < 0x80) return 1;
  if (v < 0x4000) return 2;
  if (v < 0x20_0000) return 3;
  if (v < 0x1000_0000) return 4;
  let n = 1;
  while (v >= 0x80) {
    v = Math.floor(v / 0x80);
    n++;
  }
  return n;
}
