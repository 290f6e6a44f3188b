import type { DeliveryMessage, DeliveryPage, ExpectedPages, ExportState, PageMember, SyncAction, SyncState } from "./messages.js";
import { chunk, pagesFor, planPages } from "./plan.js";
import { keys } from "./store.js";
import type { CohortSync } from "../config/cohort-syncs.js";
import type { ExportDeps, SyncReport } from "./tick.js";

export interface PartPages {
  primary: { first: number; count: number };
  remove: { first: number; count: number };
}

export interface PartCounts {
  readonly send: number;
  readonly removed: number;
  readonly moved: number;
}

export interface PageLayout {
  readonly primary: "members" | "add_members";
  readonly expected: ExpectedPages;
  readonly perPart: PartPages[];
}

/**
 * Page numbers per partition (pure): each partition's members fill their own
 * pages (≤ 1000, messages.ts PAGE_SIZE), numbered on from the previous partition's, so a run of
 * P partitions may send up to P−1 more pages than one that packs across them.
 * Which actions are sent, and the one empty page a webhook gets when there is
 * nothing to send, follow planPages (plan.ts) over the totals. One partition is
 * exactly planPages.
 */
export function pageLayout(sync: CohortSync, full: boolean, parts: readonly PartCounts[]): PageLayout {
  const sendTotal = parts.reduce((sum, p) => sum + p.send, 0);
  const removeTotal = parts.reduce((sum, p) => sum + p.removed + p.moved, 0);
  const plan = planPages(sync.destination, full, sendTotal, removeTotal);
  const sendsRemovals = plan.expected.remove_members > 0;
  const perPart: PartPages[] = [];
  let nextPrimary = 1;
  let nextRemove = 1;
  for (const p of parts) {
    const primary = pagesFor(p.send);
    const remove = sendsRemovals ? pagesFor(p.removed + p.moved) : 0;
    perPart.push({ primary: { first: nextPrimary, count: primary }, remove: { first: nextRemove, count: remove } });
    nextPrimary += primary;
    nextRemove += remove;
  }
  // The floor of one (empty) page when the plan asks for it and no partition has any.
  const first = perPart[0];
  if (first && plan.expected[plan.primary] > 0 && nextPrimary === 1) {
    first.primary.count = 1;
    nextPrimary = 2;
    for (const later of perPart.slice(1)) later.primary.first = 2;
  }
  if (first && sendsRemovals && nextRemove === 1) {
    first.remove.count = 1;
    nextRemove = 2;
    for (const later of perPart.slice(1)) later.remove.first = 2;
  }
  const expected: ExpectedPages = { members: 0, add_members: 0, remove_members: nextRemove - 1 };
  expected[plan.primary] = nextPrimary - 1;
  return { primary: plan.primary, expected, perPart };
}

/**
 * Writes a run's delivery pages and enqueues their messages, ten to an SQS
 * batch (SendMessageBatch's limit,
 * https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessageBatch.html).
 * Pages are counted in emit order; the first `run.emitted_pages` were enqueued by
 * an interrupted attempt and are skipped, so a retried emit never sends a page twice.
 * The state is written after every batch, the checkpoint that count lives in.
 */
export class PageEmitter {
  private ordinal = 0;
  private batch: { message: DeliveryMessage; body: DeliveryPage }[] = [];
  private readonly base: Pick<DeliveryPage, "v" | "sync_id" | "run_id" | "project_id" | "cohort">;

  constructor(
    private readonly sync: CohortSync,
    private readonly state: SyncState,
    private readonly run: ExportState,
    private readonly deps: ExportDeps,
    private readonly entry: SyncReport,
    private readonly layout: PageLayout,
  ) {
    this.base = { v: 1, sync_id: sync.id, run_id: run.run_id, project_id: run.project_id || deps.projectId, cohort: run.cohort };
  }

  /** Partition `part`'s pages were all enqueued before: counts them and returns true (its outbox need not be read). */
  skipIfEnqueued(part: number): boolean {
    const mine = this.layout.perPart[part];
    const pages = mine ? mine.primary.count + mine.remove.count : 0;
    if (this.ordinal + pages > this.run.emitted_pages) return false;
    this.ordinal += pages;
    return true;
  }

  /** Partition `part`'s pages: its members to send, then its members to remove. */
  async emitPart(part: number, send: readonly PageMember[], remove: readonly PageMember[]): Promise<void> {
    const mine = this.layout.perPart[part];
    if (!mine) return;
    const groups: [SyncAction, { first: number; count: number }, readonly PageMember[]][] = [
      [this.layout.primary, mine.primary, send],
      ["remove_members", mine.remove, remove],
    ];
    for (const [action, range, members] of groups) {
      if (range.count === 0) continue;
      const pages = [...chunk(members)];
      for (let k = 0; k < range.count; k++) await this.page(action, range.first + k, pages[k] ?? []);
    }
    await this.flush();
  }

  private async page(action: SyncAction, page: number, members: PageMember[]): Promise<void> {
    this.ordinal += 1;
    if (this.ordinal <= this.run.emitted_pages) return;
    const { sync, run } = this;
    const total = this.layout.expected[action];
    const key = keys.page(sync.id, run.run_id, action, page);
    this.batch.push({
      message: { v: 1, sync_id: sync.id, run_id: run.run_id, action, page, total_pages: total, key },
      body: { ...this.base, action, page, total_pages: total, members },
    });
    if (this.batch.length === 10) await this.flush();
  }

  private async flush(): Promise<void> {
    if (this.batch.length === 0) return;
    const { store } = this.deps;
    const batch = this.batch;
    this.batch = [];
    await Promise.all(batch.map(({ message, body }) => store.putPage(message.key, body)));
    await this.deps.enqueue(batch.map(({ message }) => message));
    this.run.emitted_pages += batch.length;
    this.entry.pagesEnqueued += batch.length;
    await store.writeState(this.sync.id, this.state);
  }
}
