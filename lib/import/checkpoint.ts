import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import * as z from "../util/zod.js";

/**
 * A run's progress per source file: how many rows (from the top of the file) have been
 * fully handed to the queue or Mixpanel, and whether the file is finished. Written after each
 * batch is sent, by write-then-rename, so a killed run leaves the last complete checkpoint;
 * `--resume` skips those rows and sends the rest. Rows of the batch in flight at the kill are
 * sent again, with the same `$insert_id`s, which Mixpanel dedupes.
 */
const fileProgressSchema = z.object({
  rowsDone: z.int(),
  finished: z.boolean(),
  failed: z.optional(z.string()),
});
export type FileProgress = z.infer<typeof fileProgressSchema>;

export const checkpointSchema = z.object({
  v: z.literal(1),
  /** Identifies the run's options; a resume with other options is refused. */
  runKey: z.string(),
  runId: z.string(),
  files: z.record(z.string(), fileProgressSchema),
});
export type Checkpoint = z.infer<typeof checkpointSchema>;

export function readCheckpoint(path: string): Checkpoint | undefined {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
  const parsed = checkpointSchema.safeParse(JSON.parse(text));
  if (!parsed.success) throw new Error(`${path} is not an import checkpoint: ${parsed.error.issues[0]?.message ?? "wrong shape"}`);
  return parsed.data;
}

export function writeCheckpoint(path: string, checkpoint: Checkpoint): void {
  mkdirSync(dirname(path), { recursive: true });
  const temporary = `${path}.${process.pid}.tmp`;
  writeFileSync(temporary, `${JSON.stringify(checkpoint)}\n`);
  renameSync(temporary, path);
}
