import * as z from "../util/zod.js";
import { ValidationError } from "../util/errors.js";

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

const nonEmpty = z.string().check(z.minLength(1));
const positiveInt = z.number().check(z.int(), z.positive());
const nonNegativeInt = z.number().check(z.int(), z.gte(0));

export const deliveryMessageSchema = z
  .strictObject({
    v: z.literal(1),
    sync_id: nonEmpty,
    run_id: nonEmpty,
    action: actionSchema,
    /** 1-based. */
    page: positiveInt,
    total_pages: positiveInt,
    /** S3 key of the page object. */
    key: nonEmpty,
  })
  .check(z.refine((m) => m.page <= m.total_pages, { message: "page must be ≤ total_pages", path: ["page"] }));
export type DeliveryMessage = z.infer<typeof deliveryMessageSchema>;

export const cohortMetaSchema = z.object({
  id: z.number().check(z.int()),
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
  page: positiveInt,
  total_pages: positiveInt,
  members: z.array(memberSchema).check(z.maxLength(PAGE_SIZE)),
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

const intAtLeastOne = z.number().check(z.int(), z.gte(1));

const exportStateSchema = z.object({
  run_id: z.string(),
  started_at: z.string(),
  full: z.boolean(),
  /** Forced full by an operator (`--full`): the mass-removal guard steps aside. */
  operator_full: z._default(z.boolean(), false),
  cohort: cohortMetaSchema,
  /** Mixpanel project id of the credentials used (webhook `mixpanel_project_id`). */
  project_id: z._default(z.string(), ""),
  phase: z.enum(["fetch", "emit"]),
  session_id: z.optional(z.string()),
  next_page: nonNegativeInt,
  staged_pages: nonNegativeInt,
  staged_members: nonNegativeInt,
  total: z.optional(z.number().check(z.int())),
  last_fetch_at: z.optional(z.string()),
  /**
   * A lane of a fan-out sync that shares another lane's export (the cohort is queried
   * once per run): it stages nothing itself and reads that run's staged pages.
   */
  shared_from: z.optional(z.object({ sync: z.string(), run_id: z.string() })),
  /** Output pages already enqueued by an interrupted emit (deterministic, so a retry skips them). */
  emitted_pages: z._default(nonNegativeInt, 0),
  /** A large export diffed and emitted partition by partition across invocations (emit.ts). */
  partitioned: z.optional(
    z.object({
      /** Hash-range partitions of the id space. */
      count: intAtLeastOne,
      full: z.boolean(),
      step: z.enum(["spill", "diff", "emit"]),
      /** Staged pages already split into partition chunks, and the chunks written. */
      spilled_pages: nonNegativeInt,
      chunks: nonNegativeInt,
      /** Per diffed partition, in order: what it sends and removes (the guard sums these). */
      parts: z.array(
        z.object({
          send: nonNegativeInt,
          removed: nonNegativeInt,
          moved: nonNegativeInt,
          count: nonNegativeInt,
        }),
      ),
      /** Partitions whose pages are all enqueued. */
      emitted_parts: nonNegativeInt,
    }),
  ),
});
export type ExportState = z.infer<typeof exportStateSchema>;

const expectedSchema = z.object({
  members: nonNegativeInt,
  add_members: nonNegativeInt,
  remove_members: nonNegativeInt,
});
export type ExpectedPages = z.infer<typeof expectedSchema>;

const deliveryStateSchema = z.object({
  run_id: z.string(),
  full: z.boolean(),
  enqueued_at: z.string(),
  expected: expectedSchema,
  count: nonNegativeInt,
  /** The pending snapshot is in this many hash-range partitions (absent = one object). */
  partitions: z.optional(intAtLeastOne),
});
export type DeliveryState = z.infer<typeof deliveryStateSchema>;

export const syncStateSchema = z.object({
  v: z.literal(1),
  last_started_at: z.optional(z.string()),
  last_full_at: z.optional(z.string()),
  snapshot: z.optional(
    z.object({
      run_id: z.string(),
      created_at: z.string(),
      count: nonNegativeInt,
      /** Stored in this many hash-range partitions (absent = the single snapshot object). */
      partitions: z.optional(intAtLeastOne),
    }),
  ),
  healthy: z._default(z.boolean(), true),
  unhealthy_reason: z.optional(z.string()),
  export: z.optional(exportStateSchema),
  delivery: z.optional(deliveryStateSchema),
  /** A run held by the mass-removal guard; the next run that finds the same confirms it. */
  removal_hold: z.optional(z.object({ run_id: z.string(), at: z.string(), removals: nonNegativeInt, previous: nonNegativeInt })),
});
export type SyncState = z.infer<typeof syncStateSchema>;

export const initialSyncState = (): SyncState => ({ v: 1, healthy: true });

export const failureRecordSchema = z.object({
  at: z.string(),
  status: z.optional(z.number()),
  error: z.string(),
  body: z.string(),
});
export type FailureRecord = z.infer<typeof failureRecordSchema>;

export const budgetStateSchema = z.object({ calls: z.array(z.number()) });
