import { DeleteObjectsCommand, ListObjectsV2Command, type S3Client, type _Object } from "@aws-sdk/client-s3";

/**
 * Bounds what the local stack keeps in memory during a long `npm start` session. fauxqs holds
 * every S3 object in the process's memory, so without this the rejected store, the Currents
 * bucket and the cohort runs grow until the process runs out of memory. Production needs none of
 * this (S3 lifecycle rules expire cohort runs; the rejected store is meant to be kept).
 */
export interface RetentionRule {
  readonly bucket: string;
  /** Only keys under this prefix ("" = the whole bucket). */
  readonly prefix: string;
  /** Keep at most this many objects (the newest); older ones are deleted. */
  readonly maxObjects?: number;
  /** Delete objects older than this. */
  readonly maxAgeMs?: number;
}

/** S3's DeleteObjects takes at most 1000 keys per call. */
const DELETE_BATCH = 1000;

async function listAll(s3: S3Client, rule: RetentionRule): Promise<_Object[]> {
  const objects: _Object[] = [];
  let token: string | undefined;
  // Bounded: a page is at most 1000 keys and the loop stops when S3 says there is no more.
  for (let page = 0; page < 10_000; page++) {
    const listed = await s3.send(
      new ListObjectsV2Command({ Bucket: rule.bucket, Prefix: rule.prefix || undefined, ContinuationToken: token }),
    );
    objects.push(...(listed.Contents ?? []));
    token = listed.IsTruncated ? listed.NextContinuationToken : undefined;
    if (!token) break;
  }
  return objects;
}

/** The keys a rule would delete now: past its age, or beyond its count (oldest first). */
export function keysToPrune(objects: readonly _Object[], rule: RetentionRule, nowMs: number): string[] {
  const byAgeNewestFirst = [...objects].sort(
    (a, b) => (b.LastModified?.getTime() ?? 0) - (a.LastModified?.getTime() ?? 0) || (b.Key ?? "").localeCompare(a.Key ?? ""),
  );
  const doomed = new Set<string>();
  byAgeNewestFirst.forEach((object, position) => {
    const key = object.Key;
    if (key === undefined) return;
    const age = nowMs - (object.LastModified?.getTime() ?? nowMs);
    if (rule.maxObjects !== undefined && position >= rule.maxObjects) doomed.add(key);
    if (rule.maxAgeMs !== undefined && age > rule.maxAgeMs) doomed.add(key);
  });
  return [...doomed];
}

/** Applies every rule once; answers how many objects it deleted. */
export async function pruneOnce(s3: S3Client, rules: readonly RetentionRule[], nowMs: number): Promise<number> {
  let deleted = 0;
  for (const rule of rules) {
    const keys = keysToPrune(await listAll(s3, rule), rule, nowMs);
    for (let start = 0; start < keys.length; start += DELETE_BATCH) {
      const batch = keys.slice(start, start + DELETE_BATCH);
      await s3.send(new DeleteObjectsCommand({ Bucket: rule.bucket, Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true } }));
      deleted += batch.length;
    }
  }
  return deleted;
}

export class LocalRetention {
  private timer: NodeJS.Timeout | undefined;
  private busy = false;

  constructor(
    private readonly options: {
      s3: S3Client;
      rules: readonly RetentionRule[];
      intervalMs: number;
      /** Called after each pass; trims in-memory state that is not in S3 (e.g. the Mixpanel sandbox). */
      afterPass?: () => void;
      onPruned?: (deleted: number) => void;
      onError?: (error: unknown) => void;
    },
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.passOnce(), this.options.intervalMs);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  async passOnce(): Promise<number> {
    if (this.busy) return 0;
    this.busy = true;
    try {
      const deleted = await pruneOnce(this.options.s3, this.options.rules, Date.now());
      this.options.afterPass?.();
      if (deleted > 0) this.options.onPruned?.(deleted);
      return deleted;
    } catch (error) {
      this.options.onError?.(error);
      return 0;
    } finally {
      this.busy = false;
    }
  }
}
