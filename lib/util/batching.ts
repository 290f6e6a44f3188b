/**
 * Splits items, in order, into groups under two independent caps: an item count
 * and a byte total (Mixpanel's 2000 events / 10 MB per /import request, SQS's 10
 * entries / message-size cap per SendMessageBatch). An item larger than the byte
 * cap on its own still gets a group of its own; the receiver decides its fate.
 */
export function groupByCaps<T>(
  items: Iterable<T>,
  sizeOf: (item: T) => number,
  maxCount: number,
  maxBytes: number,
): T[][] {
  const groups: T[][] = [];
  let current: T[] = [];
  let bytes = 0;
  for (const item of items) {
    const size = sizeOf(item);
    if (current.length > 0 && (current.length >= maxCount || bytes + size > maxBytes)) {
      groups.push(current);
      current = [];
      bytes = 0;
    }
    current.push(item);
    bytes += size;
  }
  if (current.length > 0) groups.push(current);
  return groups;
}
