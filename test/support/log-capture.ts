/**
 * Captures everything written to stdout and stderr (Powertools' logger and metrics write
 * there through their own Console) while a test runs, so tests can read the log lines
 * and assert what they do and do not contain.
 */
export interface LogCapture {
  /** Everything written since the capture started. */
  text(): string;
  /** The JSON lines written since the capture started (non-JSON output is skipped). */
  jsonLines(): Record<string, unknown>[];
  stop(): void;
}

export function captureOutput(options: { echo?: boolean } = {}): LogCapture {
  const chunks: string[] = [];
  const originals = { stdout: process.stdout.write.bind(process.stdout), stderr: process.stderr.write.bind(process.stderr) };
  const tap =
    (original: typeof process.stdout.write) =>
    (chunk: unknown, ...rest: unknown[]): boolean => {
      chunks.push(Buffer.isBuffer(chunk) ? chunk.toString("utf8") : String(chunk));
      return options.echo ? (original as (...args: unknown[]) => boolean)(chunk, ...rest) : true;
    };
  process.stdout.write = tap(originals.stdout) as typeof process.stdout.write;
  process.stderr.write = tap(originals.stderr) as typeof process.stderr.write;
  return {
    text: () => chunks.join(""),
    jsonLines: () =>
      chunks
        .join("")
        .split("\n")
        .flatMap((line) => {
          try {
            const parsed: unknown = JSON.parse(line);
            return parsed !== null && typeof parsed === "object" && !Array.isArray(parsed) ? [parsed as Record<string, unknown>] : [];
          } catch {
            return [];
          }
        }),
    stop() {
      process.stdout.write = originals.stdout;
      process.stderr.write = originals.stderr;
    },
  };
}

/** The JSON lines written to stdout and stderr while `run` runs (not echoed); what `run` throws is thrown. */
export async function jsonLinesWhile(run: () => Promise<unknown>): Promise<Record<string, unknown>[]> {
  const capture = captureOutput();
  try {
    await run();
  } finally {
    capture.stop();
  }
  return capture.jsonLines();
}
