import { isUtf8 } from "node:buffer";

/**
 * Bytes to text without silent replacement: UTF-8 (with the repair of surrogate pairs written
 * as two 3-byte sequences), or a declared charset through the WHATWG decoders. Pure.
 */

export type TextDecodeResult =
  | {
      readonly ok: true;
      readonly text: string;
      /** Surrogate halves written on their own (no partner), each turned into U+FFFD. */
      readonly loneSurrogates: number;
    }
  | { readonly ok: false; readonly code: "invalid_utf8" | "invalid_text" | "unsupported_charset"; readonly message: string };

const REPLACEMENT = Uint8Array.of(0xef, 0xbf, 0xbd);

/** Length of the well-formed UTF-8 sequence starting at `at` (RFC 3629 §4), 0 when there is none; surrogates (ED A0..BF) excluded. */
function sequenceLength(bytes: Uint8Array, at: number): number {
  const lead = bytes[at] ?? 0;
  if (lead < 0x80) return 1;
  const cont = (offset: number, low = 0x80, high = 0xbf) => {
    const byte = bytes[at + offset];
    return byte !== undefined && byte >= low && byte <= high;
  };
  if (lead >= 0xc2 && lead <= 0xdf) return cont(1) ? 2 : 0;
  if (lead === 0xe0) return cont(1, 0xa0) && cont(2) ? 3 : 0;
  if ((lead >= 0xe1 && lead <= 0xec) || lead === 0xee || lead === 0xef) return cont(1) && cont(2) ? 3 : 0;
  if (lead === 0xed) return cont(1, 0x80, 0x9f) && cont(2) ? 3 : 0;
  if (lead === 0xf0) return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
  if (lead >= 0xf1 && lead <= 0xf3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
  if (lead === 0xf4) return cont(1, 0x80, 0x8f) && cont(2) && cont(3) ? 4 : 0;
  return 0;
}

/** The UTF-16 surrogate written as a 3-byte sequence at `at` (ED A0..BF 80..BF), or undefined. */
function surrogateAt(bytes: Uint8Array, at: number): number | undefined {
  const second = bytes[at + 1];
  const third = bytes[at + 2];
  if (bytes[at] !== 0xed || second === undefined || third === undefined) return undefined;
  if (second < 0xa0 || second > 0xbf || third < 0x80 || third > 0xbf) return undefined;
  return 0xd000 | ((second & 0x3f) << 6) | (third & 0x3f);
}

/**
 * UTF-8 bytes as text. mixpanel-browser's own encoder writes each half of a surrogate pair as
 * its own 3-byte sequence (CESU-8 style, https://github.com/mixpanel/mixpanel-js/issues/385,
 * docs/vendors/mixpanel-wire.md §4): a high half followed by a low half becomes the real
 * character; a half without its partner becomes U+FFFD and is counted. Anything else that is
 * not UTF-8 is refused with the byte offset, never replaced.
 */
export function decodeUtf8(bytes: Uint8Array): TextDecodeResult {
  const buffer = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (isUtf8(buffer)) return { ok: true, text: buffer.toString("utf8"), loneSurrogates: 0 };
  let loneSurrogates = 0;
  let copiedUpTo = 0;
  const chunks: Uint8Array[] = [];
  const flush = (end: number) => {
    if (end > copiedUpTo) chunks.push(buffer.subarray(copiedUpTo, end));
  };
  let at = 0;
  while (at < buffer.length) {
    const length = sequenceLength(buffer, at);
    if (length > 0) {
      at += length;
      continue;
    }
    const high = surrogateAt(buffer, at);
    if (high === undefined) {
      return { ok: false, code: "invalid_utf8", message: `body is not valid UTF-8 at byte ${at}; declare its charset in Content-Type if it is not UTF-8` };
    }
    flush(at);
    const low = high <= 0xdbff ? surrogateAt(buffer, at + 3) : undefined;
    if (low !== undefined && low >= 0xdc00) {
      const codePoint = 0x10000 + ((high - 0xd800) << 10) + (low - 0xdc00);
      chunks.push(Uint8Array.of(0xf0 | (codePoint >> 18), 0x80 | ((codePoint >> 12) & 0x3f), 0x80 | ((codePoint >> 6) & 0x3f), 0x80 | (codePoint & 0x3f)));
      at += 6;
    } else {
      chunks.push(REPLACEMENT);
      loneSurrogates++;
      at += 3;
    }
    copiedUpTo = at;
  }
  flush(buffer.length);
  return { ok: true, text: Buffer.concat(chunks).toString("utf8"), loneSurrogates };
}

/** The `charset` parameter of a Content-Type, lower-cased, or undefined. */
export function declaredCharset(contentType: string | undefined): string | undefined {
  const match = /;\s*charset\s*=\s*"?([^";\s]+)"?/i.exec(contentType ?? "");
  return match?.[1]?.toLowerCase();
}

/** Labels read as UTF-8 (US-ASCII is a subset: its bytes must be valid UTF-8 too). */
const UTF8_LABELS = new Set(["utf-8", "utf8", "unicode-1-1-utf-8", "us-ascii", "ascii"]);

/** The Encoding Standard's labels for windows-1252 (https://encoding.spec.whatwg.org/#names-and-labels). */
const WINDOWS_1252_LABELS = new Set([
  "ansi_x3.4-1968", "cp1252", "cp819", "csisolatin1", "ibm819", "iso-8859-1", "iso-ir-100", "iso8859-1", "iso88591",
  "iso_8859-1", "iso_8859-1:1987", "l1", "latin1", "windows-1252", "x-cp1252",
]);

/**
 * 0x80..0x9F in windows-1252 (https://encoding.spec.whatwg.org/index-windows-1252.txt); the other
 * bytes are their own code points. Written out because Node's TextDecoder (20.x) reads these
 * labels as ISO-8859-1, turning 0x80 into U+0080 instead of €.
 */
const WINDOWS_1252_HIGH = [
  0x20ac, 0x81, 0x201a, 0x192, 0x201e, 0x2026, 0x2020, 0x2021, 0x2c6, 0x2030, 0x160, 0x2039, 0x152, 0x8d, 0x17d, 0x8f,
  0x90, 0x2018, 0x2019, 0x201c, 0x201d, 0x2022, 0x2013, 0x2014, 0x2dc, 0x2122, 0x161, 0x203a, 0x153, 0x9d, 0x17e, 0x178,
];

function decodeWindows1252(bytes: Uint8Array): string {
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("latin1");
  return text.replace(/[\u0080-\u009f]/g, (char) => String.fromCharCode(WINDOWS_1252_HIGH[char.charCodeAt(0) - 0x80] ?? 0xfffd));
}

/**
 * A body's bytes as text, in the charset its Content-Type declares: none or UTF-8 → decodeUtf8;
 * any other label the WHATWG Encoding Standard knows (ISO-8859-1, latin1 and windows-1252 all
 * name windows-1252 there; utf-16 is UTF-16LE with a BOM honoured) through TextDecoder, refusing
 * bytes that charset cannot hold rather than replacing them.
 */
export function decodeText(bytes: Uint8Array, charset: string | undefined): TextDecodeResult {
  if (charset === undefined || UTF8_LABELS.has(charset)) return decodeUtf8(bytes);
  if (WINDOWS_1252_LABELS.has(charset)) return { ok: true, text: decodeWindows1252(bytes), loneSurrogates: 0 };
  let decoder: TextDecoder;
  try {
    decoder = new TextDecoder(charset, { fatal: true });
  } catch {
    return { ok: false, code: "unsupported_charset", message: `charset ${charset} is not supported; send UTF-8` };
  }
  try {
    return { ok: true, text: decoder.decode(bytes), loneSurrogates: 0 };
  } catch {
    return { ok: false, code: "invalid_text", message: `body is not valid ${decoder.encoding}` };
  }
}
