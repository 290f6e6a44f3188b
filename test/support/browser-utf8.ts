/**
 * mixpanel-browser's own UTF-8 encoder: each UTF-16 code unit on its own, so a surrogate pair
 * becomes two 3-byte sequences (CESU-8) instead of one 4-byte sequence. Senders' bytes, as the
 * intake must read them.
 */
export function browserUtf8(text: string): Buffer {
  const bytes: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit < 0x80) bytes.push(unit);
    else if (unit < 0x800) bytes.push(0xc0 | (unit >> 6), 0x80 | (unit & 0x3f));
    else bytes.push(0xe0 | (unit >> 12), 0x80 | ((unit >> 6) & 0x3f), 0x80 | (unit & 0x3f));
  }
  return Buffer.from(bytes);
}
