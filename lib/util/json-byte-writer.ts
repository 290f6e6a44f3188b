/**
 * A growing byte buffer that writes JSON tokens straight as UTF-8 bytes: building each
 * token as a string, joining the strings and encoding the result costs several times
 * the copy. `quoted` takes the fast path only for printable ASCII without `"` or `\`
 * (whose JSON string is the text between quotes) and reports false otherwise, so the
 * caller falls back to JSON.stringify for anything that needs escaping.
 */
export class JsonByteWriter {
  bytes: Buffer;
  length = 0;

  constructor(capacity: number) {
    this.bytes = Buffer.allocUnsafe(capacity);
  }

  reset(): void {
    this.length = 0;
  }

  private room(n: number): void {
    if (this.length + n <= this.bytes.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.bytes.length * 2, this.length + n));
    grown.set(this.bytes.subarray(0, this.length));
    this.bytes = grown;
  }

  byte(b: number): void {
    this.room(1);
    this.bytes[this.length++] = b;
  }

  /** Text known to be ASCII. */
  ascii(text: string): void {
    this.room(text.length);
    for (let i = 0; i < text.length; i++) this.bytes[this.length++] = text.charCodeAt(i);
  }

  /** A safe integer's decimal digits (String(value), without the string). */
  integer(value: number): void {
    this.room(17);
    let rest = value;
    if (rest < 0) {
      this.bytes[this.length++] = 45; // -
      rest = -rest;
    }
    // Eight digits at a time keeps each part a small integer.
    const high = Math.floor(rest / 100_000_000);
    const low = rest - high * 100_000_000;
    if (high > 0) {
      this.digits(high, 0);
      this.digits(low, 8);
    } else this.digits(low, 0);
  }

  /** The digits of 0 ≤ value < 10^8, zero-padded to `width`. */
  private digits(value: number, width: number): void {
    let count = 1;
    for (let v = value; v >= 10; v = Math.floor(v / 10)) count++;
    if (count < width) count = width;
    let at = this.length + count;
    this.length = at;
    let v = value;
    for (let k = 0; k < count; k++) {
      const q = Math.floor(v / 10);
      this.bytes[--at] = 48 + v - q * 10;
      v = q;
    }
  }

  /** JSON.stringify(text) when that is the text between quotes (printable ASCII, no `"` or `\`); else false. */
  quoted(text: string): boolean {
    const n = text.length;
    this.room(n + 2);
    const bytes = this.bytes;
    let at = this.length;
    bytes[at++] = 34;
    for (let i = 0; i < n; i++) {
      const c = text.charCodeAt(i);
      if (c < 0x20 || c > 0x7e || c === 34 || c === 92) return false;
      bytes[at++] = c;
    }
    bytes[at++] = 34;
    this.length = at;
    return true;
  }

  utf8(text: string): void {
    this.room(Buffer.byteLength(text, "utf8"));
    this.length += this.bytes.write(text, this.length, "utf8");
  }

  append(other: JsonByteWriter): void {
    this.room(other.length);
    this.bytes.set(other.bytes.subarray(0, other.length), this.length);
    this.length += other.length;
  }

  /** The bytes written, copied out (the writer's buffer is larger). */
  result(): Buffer {
    return Buffer.from(this.bytes.subarray(0, this.length));
  }
}
