/**
 * Progress for long operator runs (redrive, replay, backfill): a bar redrawn in place on a
 * terminal, a plain line every few seconds otherwise (CI logs, `| tee`), both
 * with the count, the total when known, and the rate; then one summary line.
 */
export interface ProgressSink {
  write(text: string): unknown;
  readonly isTTY?: boolean;
}

export interface ProgressOptions {
  /** What is counted, plural ("messages", "objects"). */
  readonly unit: string;
  /** Known total (e.g. the DLQ depth before starting); undefined = unknown. */
  readonly total?: number;
  readonly sink?: ProgressSink;
  /** Between plain lines when not on a TTY. */
  readonly intervalMs?: number;
  readonly now?: () => number;
  /** More to show after the count (e.g. the events behind the days counted), read at each redraw. */
  readonly detail?: () => string;
  /** Show the time left at the rate so far (needs `total`). */
  readonly eta?: boolean;
}

export interface Progress {
  advance(count: number): void;
  /** Clears the bar; answers "N unit in T s (R/s)" for the caller's summary. */
  finish(): string;
}

const BAR_WIDTH = 30;
/** Redraw the TTY bar at most this often. */
const TTY_REDRAW_MS = 100;

export function formatRate(count: number, elapsedMs: number): string {
  const seconds = Math.max(elapsedMs, 1) / 1000;
  return `${(count / seconds).toFixed(count / seconds >= 10 ? 0 : 1)}/s`;
}

/** "45 s", "12 min", "3.5 h". */
export function formatDuration(ms: number): string {
  const seconds = Math.max(0, Math.round(ms / 1000));
  if (seconds < 120) return `${seconds} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

export function createProgress(options: ProgressOptions): Progress {
  const sink = options.sink ?? process.stderr;
  const now = options.now ?? Date.now;
  const intervalMs = options.intervalMs ?? 5_000;
  const tty = sink.isTTY === true;
  const started = now();
  let done = 0;
  let lastDraw = Number.NEGATIVE_INFINITY;
  let drawn = false;

  const describe = () => {
    const elapsed = now() - started;
    const of = options.total !== undefined ? `/${options.total}` : "";
    const percent = options.total ? ` (${Math.min(100, Math.floor((100 * done) / options.total))}%)` : "";
    const extra = options.detail ? `, ${options.detail()}` : "";
    // Remaining units at the rate so far; only once one is done, so the first guess has a basis.
    const eta = options.eta === true && options.total !== undefined && done > 0 && done < options.total ? `, ETA ${formatDuration(((options.total - done) * elapsed) / done)}` : "";
    return `${done}${of} ${options.unit}${percent}, ${formatRate(done, elapsed)}${extra}${eta}`;
  };

  const draw = (force: boolean) => {
    const at = now();
    if (tty) {
      if (!force && at - lastDraw < TTY_REDRAW_MS) return;
      const filled = options.total ? Math.min(BAR_WIDTH, Math.round((BAR_WIDTH * done) / options.total)) : 0;
      const bar = options.total ? `[${"#".repeat(filled)}${"-".repeat(BAR_WIDTH - filled)}] ` : "";
      sink.write(`\r\x1b[2K${bar}${describe()}`);
      drawn = true;
    } else {
      if (!force && at - lastDraw < intervalMs) return;
      sink.write(`progress: ${describe()}\n`);
    }
    lastDraw = at;
  };

  return {
    advance(count) {
      done += count;
      draw(false);
    },
    finish() {
      if (tty && drawn) sink.write("\r\x1b[2K");
      const elapsed = now() - started;
      return `${done} ${options.unit} in ${(elapsed / 1000).toFixed(1)} s (${formatRate(done, elapsed)})`;
    },
  };
}
