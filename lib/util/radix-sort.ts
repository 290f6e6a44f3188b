/**
 * Rows 0 … n−1 sorted by their unsigned 32-bit key, stably: an LSD radix sort in two
 * 16-bit passes. Linear in n, where a comparison sort of a million rows by a derived
 * key costs seconds; stable, so rows with equal keys keep their order.
 */
export function rowsSortedByUint32Key(keys: ArrayLike<number>, n: number): Uint32Array {
  let order = new Uint32Array(n);
  let scratch = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  const counts = new Uint32Array(65_537);
  for (const shift of [0, 16]) {
    counts.fill(0);
    for (let i = 0; i < n; i++) (counts[(((keys[order[i] ?? 0] ?? 0) >>> shift) & 0xffff) + 1] as number)++;
    for (let b = 1; b < counts.length; b++) counts[b] = (counts[b] ?? 0) + (counts[b - 1] ?? 0);
    for (let i = 0; i < n; i++) {
      const row = order[i] ?? 0;
      const bucket = ((keys[row] ?? 0) >>> shift) & 0xffff;
      scratch[counts[bucket] ?? 0] = row;
      counts[bucket] = (counts[bucket] ?? 0) + 1;
    }
    [order, scratch] = [scratch, order];
  }
  return order;
}
