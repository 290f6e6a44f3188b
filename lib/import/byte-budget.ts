/**
 * Mixpanel's /import takes at most 2 GB of uncompressed data per minute per project, over a
 * rolling minute, and answers 429 past it (https://developer.mixpanel.com/reference/import-events,
 * docs/vendors/mixpanel-api.md §3). `--via direct` spends this budget before each batch, so a
 * large backfill paces itself below the limit instead of living on 429 back-offs, which stay
 * the answer to anything else sending to the same project at the same time.
 */
export const MIXPANEL_IMPORT_BYTES_PER_MINUTE = 2_000_000_000;
export const ROLLING_WINDOW_MS = 60_000;

export interface ByteBudgetDeps {
  readonly nowMs: () => number;
  readonly sleep: (ms: number) => Promise<void>;
  /** Told before each wait, with how long and why. */
  readonly onWait?: (waitMs: number, spentBytes: number) => void;
}

export interface ByteBudget {
  /** Resolves once `bytes` fit in the rolling window, and counts them as spent from then on. */
  spend(bytes: number): Promise<void>;
}

/**
 * A budget of `limitBytes` per rolling `windowMs`. Spenders are served in arrival order. A spend
 * larger than the whole budget goes alone, once the window is empty (it could never fit).
 */
export function rollingByteBudget(limitBytes: number, windowMs: number, deps: ByteBudgetDeps): ByteBudget {
  const spent: { atMs: number; bytes: number }[] = [];
  let spentBytes = 0;
  let queue: Promise<void> = Promise.resolve();

  const forget = (nowMs: number) => {
    while (spent.length > 0 && (spent[0]?.atMs ?? 0) + windowMs <= nowMs) spentBytes -= spent.shift()?.bytes ?? 0;
  };

  const take = async (bytes: number) => {
    // Each wait lasts until the oldest spend leaves the window, so the loop ends after at most one wait per spend held.
    for (;;) {
      const nowMs = deps.nowMs();
      forget(nowMs);
      if (spent.length === 0 || spentBytes + bytes <= limitBytes) {
        spent.push({ atMs: nowMs, bytes });
        spentBytes += bytes;
        return;
      }
      const waitMs = Math.max(1, (spent[0]?.atMs ?? nowMs) + windowMs - nowMs);
      deps.onWait?.(waitMs, spentBytes);
      await deps.sleep(waitMs);
    }
  };

  return {
    spend(bytes) {
      const turn = queue.then(() => take(bytes));
      queue = turn.catch(() => undefined);
      return turn;
    },
  };
}

/** The uncompressed size of records sent as NDJSON: each line and its newline. */
export function ndjsonBytes(lines: readonly string[]): number {
  let bytes = 0;
  for (const line of lines) bytes += Buffer.byteLength(line) + 1;
  return bytes;
}
