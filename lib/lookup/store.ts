import * as z from "../util/zod.js";
import { isMissingObject } from "../aws/aws-call.js";
import type { S3Api } from "../aws/s3.js";
import { RetryableError } from "../util/errors.js";
import { parseJsonWith } from "../util/json.js";

/**
 * The lookup-table sync's state in the snapshot bucket (SNAPSHOT_BUCKET):
 *
 *   lookup-tables/_replaces.json     replace calls of the last 24 h (the project's budget)
 *   lookup-tables/<id>/state.json    the hash of the file last replaced, when, and the last outcome
 */
export const LOOKUP_PREFIX = "lookup-tables/";

export const lookupKeys = {
  replaces: () => `${LOOKUP_PREFIX}_replaces.json`,
  state: (id: string) => `${LOOKUP_PREFIX}${id}/state.json`,
};

export const lookupStateSchema = z.object({
  /** SHA-256 of the uncompressed CSV Mixpanel last accepted. */
  replaced_sha256: z.optional(z.string()),
  replaced_at: z.optional(z.string()),
  replaced_rows: z.optional(z.number()),
  /** When the file was last looked at (a scheduled table is due one interval after this). */
  checked_at: z.optional(z.string()),
  last_outcome: z.optional(z.string()),
  last_detail: z.optional(z.string()),
});
export type LookupState = z.infer<typeof lookupStateSchema>;

const replacesSchema = z.object({ calls: z.array(z.number()) });

export interface LookupStore {
  readState(id: string): Promise<LookupState>;
  writeState(id: string, state: LookupState): Promise<void>;
  /** Epoch ms of every replace call recorded. */
  readReplaces(): Promise<number[]>;
  writeReplaces(calls: readonly number[]): Promise<void>;
}

export function createLookupStore(s3: S3Api, bucket: string): LookupStore {
  async function read<T>(key: string, schema: z.ZodType<T>): Promise<T | undefined> {
    let bytes: Uint8Array;
    try {
      bytes = await s3.getObject(bucket, key);
    } catch (error) {
      if (isMissingObject(error)) return undefined;
      throw new RetryableError(`S3 read of s3://${bucket}/${key} failed: ${error instanceof Error ? error.message : String(error)}`);
    }
    const parsed = parseJsonWith(schema, Buffer.from(bytes).toString("utf8"));
    // A state file the relay cannot read is treated as absent: the next run replaces once more.
    return parsed.success ? parsed.data : undefined;
  }
  const write = (key: string, value: unknown) => s3.putObject(bucket, key, JSON.stringify(value), "application/json");
  return {
    readState: async (id) => (await read(lookupKeys.state(id), lookupStateSchema)) ?? {},
    writeState: (id, state) => write(lookupKeys.state(id), state),
    readReplaces: async () => (await read(lookupKeys.replaces(), replacesSchema))?.calls ?? [],
    writeReplaces: (calls) => write(lookupKeys.replaces(), { calls }),
  };
}
