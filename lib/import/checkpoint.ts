import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { AwsCallError } from "../aws/aws-call.js";
import type { S3Api } from "../aws/s3.js";
import { parseJson } from "../util/json.js";
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

/** Where a run's checkpoint lives: a local file, or an object in the stage's bucket. */
export interface CheckpointStore {
  /** For messages: the file path or `s3://bucket/key`. */
  readonly where: string;
  /** The stored checkpoint, or undefined when there is none yet. */
  read(): Promise<Checkpoint | undefined>;
  write(checkpoint: Checkpoint): Promise<void>;
}

function parsedCheckpoint(where: string, text: string): Checkpoint {
  const json = parseJson(text);
  if (!json.ok) throw new Error(`${where} is not an import checkpoint: ${json.error}`);
  const parsed = checkpointSchema.safeParse(json.value);
  if (!parsed.success) throw new Error(`${where} is not an import checkpoint: ${parsed.error.issues[0]?.message ?? "wrong shape"}`);
  return parsed.data;
}

/** A checkpoint file beside the run, written by write-then-rename. */
export function fileCheckpointStore(path: string): CheckpointStore {
  return {
    where: path,
    async read() {
      let text: string;
      try {
        text = readFileSync(path, "utf8");
      } catch {
        return undefined;
      }
      return parsedCheckpoint(path, text);
    },
    async write(checkpoint) {
      mkdirSync(dirname(path), { recursive: true });
      const temporary = `${path}.${process.pid}.tmp`;
      writeFileSync(temporary, `${JSON.stringify(checkpoint)}\n`);
      renameSync(temporary, path);
    },
  };
}

/**
 * A checkpoint object in the stage's bucket, for runs that read S3 sources (so a run resumed
 * from another machine finds it). A PutObject replaces the object whole, so a killed run
 * leaves the last complete checkpoint (https://docs.aws.amazon.com/AmazonS3/latest/userguide/Welcome.html#ConsistencyModel).
 */
export function s3CheckpointStore(s3: Pick<S3Api, "getObject" | "putObject">, bucket: string, key: string): CheckpointStore {
  const where = `s3://${bucket}/${key}`;
  return {
    where,
    async read() {
      let bytes: Uint8Array;
      try {
        bytes = await s3.getObject(bucket, key);
      } catch (error) {
        if (error instanceof AwsCallError && (error.code === "NoSuchKey" || error.status === 404)) return undefined;
        throw error;
      }
      return parsedCheckpoint(where, Buffer.from(bytes).toString("utf8"));
    },
    async write(checkpoint) {
      await s3.putObject(bucket, key, `${JSON.stringify(checkpoint)}\n`, "application/json");
    },
  };
}
