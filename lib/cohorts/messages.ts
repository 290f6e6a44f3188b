import * as z from "zod";
import { ValidationError } from "../errors.js";

/**
 * Shapes that cross a boundary between the two functions or between runs:
 * the SQS delivery message, the delivery page object it points to (claim check
 * in S3, so 1000 members with extra properties never hit the SQS size cap),
 * the staged export page and the per-sync state.
 */

export const ACTIONS = ["members", "add_members", "remove_members"] as const;
export const actionSchema = z.enum(ACTIONS);
export type SyncAction = z.infer<typeof actionSchema>;

/** Largest page: Mixpanel's webhook contract sends at most 1000 members per call. */
export const PAGE_SIZE = 1000;

const memberSchema = z.object({ id: z.string(), props: z.record(z.string(), z.unknown()) });
export type PageMember = z.infer<typeof memberSchema>;

export const deliveryMessageSchema = z
  .object({
    v: z.literal(1),
    sync_id: z.string().min(1),
    run_id: z.string().min(1),
    action: actionSchema,
    /** 1-based. */
    page: z.number().int().positive(),
    total_pages: z.number().int().positive(),
    /** S3 key of the page object. */
    key: z.string().min(1),
  })
  .strict()
  .refine((m) => m.page <= m.total_pages, { message: "page must be ≤ total_pages", path: ["page"] });
export type DeliveryMessage = z.infer<typeof deliveryMessageSchema>;

export const cohortMetaSchema = z.object({
  id: z.number().int(),
  name: z.string(),
  description: z.string(),
});
export type CohortMeta = z.infer<typeof cohortMetaSchema>;

export const deliveryPageSchema = z.object({
  v: z.literal(1),
  sync_id: z.string(),
  run_id: z.string(),
  project_id: z.string(),
  cohort: cohortMetaSchema,
  action: actionSchema,
  page: z.number().int().positive(),
  total_pages: z.number().int().positive(),
  members: z.array(memberSchema).max(PAGE_SIZE),
});
export type DeliveryPage = z.infer<typeof deliveryPageSchema>;

export const stagedPageSchema = z.object({ members: z.array(memberSchema) });
export type StagedPage = z.infer<typeof stagedPageSchema>;

/**
 * Members of a staged page, partition chunk or outbox, objects the relay wrote
 * itself: checked by hand to the same shape as `memberSchema`, because a 10 M
 * export passes 10 M members here (zod costs about a second per million).
 */
export function parseMembers(raw: unknown, what: string): PageMember[] {
  if (!Array.isArray(raw)) throw new ValidationError(`${what}: members is not an array`);
  // Checked in place: no second object per member (fewer allocations, less GC).
  const members: unknown[] = raw;
  if (!members.every(isPageMember)) throw new ValidationError(`${what}: a member has the wrong shape`);
  return members;
}

function isPageMember(item: unknown): item is PageMember {
  if (item === null || typeof item !== "object") return false;
  const id: unknown = Reflect.get(item, "id");
  return typeof id === "string" && isPlainRecord(Reflect.get(item, "props"));
}

function isPlainRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

const exportStateSchema = z.object({
  run_id: z.string(),
  started_at: z.string(),
  full: z.boolean(),
  /** Forced full by an operator (`--full`): the mass-removal guard steps aside. */
  operator_full: z.boolean().default(false),
  cohort: cohortMetaSchema,
  /** Mixpanel project id of the credentials used (webhook `mixpanel_project_id`). */
  project_id: z.string().default(""),
  phase: z.enum(["fetch", "emit"]),
  session_id: z.string().optional(),
  next_page: z.number().int().min(0),
  staged_pages: z.number().int().min(0),
  staged_members: z.number().int().min(0),
  total: z.number().int().optional(),
  last_fetch_at: z.string().optional(),
  /**
   * A lane of a fan-out sync that shares another lane's export (the cohort is queried
   * once per run): it stages nothing itself and reads that run's staged pages.
   */
  shared_from: z.object({ sync: z.string(), run_id: z.string() }).optional(),
  /** Output pages already enqueued by an interrupted emit (deterministic, so a retry skips them). */
  emitted_pages: z.number().int().min(0).default(0),
  /** A large export diffed and emitted partition by partition across invocations (partitions.ts). */
  partitioned: z
    .object({
      /** Hash-range partitions of the id space. */
      count: z.number().int().min(1),
      full: z.boolean(),
      step: z.enum(["spill", "diff", "emit"]),
      /** Staged pages already split into partition chunks, and the chunks written. */
      spilled_pages: z.number().int().min(0),
      chunks: z.number().int().min(0),
      /** Per diffed partition, in order: what it sends and removes (the guard sums these). */
      parts: z.array(
        z.object({
          send: z.number().int().min(0),
          removed: z.number().int().min(0),
          moved: z.number().int().min(0),
          count: z.number().int().min(0),
        }),
      ),
      /** Partitions whose pages are all enqueued. */
      emitted_parts: z.number().int().min(0),
    })
    .optional(),
});
export type ExportState = z.infer<typeof exportStateSchema>;

const expectedSchema = z.object({
  members: z.number().int().min(0),
  add_members: z.number().int().min(0),
  remove_members: z.number().int().min(0),
});
export type ExpectedPages = z.infer<typeof expectedSchema>;

const deliveryStateSchema = z.object({
  run_id: z.string(),
  full: z.boolean(),
  enqueued_at: z.string(),
  expected: expectedSchema,
  count: z.number().int().min(0),
  /** The pending snapshot is in this many hash-range partitions (absent = one object). */
  partitions: z.number().int().min(1).optional(),
});
export type DeliveryState = z.infer<typeof deliveryStateSchema>;

export const syncStateSchema = z.object({
  v: z.literal(1),
  last_started_at: z.string().optional(),
  last_full_at: z.string().optional(),
  snapshot: z
    .object({
      run_id: z.string(),
      created_at: z.string(),
      count: z.number().int().min(0),
      /** Stored in this many hash-range partitions (absent = the single snapshot object). */
      partitions: z.number().int().min(1).optional(),
    })
    .optional(),
  healthy: z.boolean().default(true),
  unhealthy_reason: z.string().optional(),
  export: exportStateSchema.optional(),
  delivery: deliveryStateSchema.optional(),
  /** A run held by the mass-removal guard; the next run that finds the same confirms it. */
  removal_hold: z
    .object({ run_id: z.string(), at: z.string(), removals: z.number().int().min(0), previous: z.number().int().min(0) })
    .optional(),
});
export type SyncState = z.infer<typeof syncStateSchema>;

export const initialSyncState = (): SyncState => ({ v: 1, healthy: true });

export const failureRecordSchema = z.object({
  at: z.string(),
  status: z.number().optional(),
  error: z.string(),
  body: z.string(),
});
export type FailureRecord = z.infer<typeof failureRecordSchema>;

export const budgetStateSchema = z.object({ calls: z.array(z.number()) });
