import type { IngestionClient, LineOutcome } from "../mixpanel/ingestion.js";
import { protectItems } from "../pii/items.js";
import type { RejectedItemRecord, RejectedStore } from "../queue/rejected-store.js";
import type { RecordKind } from "../records/envelope.js";
import type { MappedItem, RejectedItem } from "../sources/types.js";
import { RetryableError } from "../util/errors.js";
import { type ByteBudget, ndjsonBytes } from "./byte-budget.js";
import type { BatchSender } from "./run.js";

/**
 * `--via direct`: a batch straight to Mixpanel with the forwarder's client (strict /import,
 * 2000 records / 10 MB per request, several requests in flight, 429 and 5xx backed off by the one
 * retry policy: docs/vendors/mixpanel-api.md §3). The PII rules apply first, as on the queue path;
 * what the mappers or Mixpanel refuse goes to the rejected store with its reason. A batch Mixpanel
 * could not take (retries exhausted, credentials wrong) stops the run before the checkpoint moves,
 * so `--resume` sends it again; the Brevo fan-out is the queue path's and does not run here.
 */
export interface DirectDeps {
  readonly client: IngestionClient;
  readonly rejected: RejectedStore;
  /** Mixpanel's per-project /import bytes per rolling minute (byte-budget.ts); spent before each batch of events. */
  readonly importBudget?: ByteBudget;
}

const SEND: Record<RecordKind, keyof Pick<IngestionClient, "importEvents" | "updateProfiles" | "updateGroups">> = {
  event: "importEvents",
  profile: "updateProfiles",
  group: "updateGroups",
};

export function directSender(deps: DirectDeps): BatchSender {
  return async (items, batch) => {
    const rejections: RejectedItem[] = [];
    const mapperRejections: RejectedItemRecord[] = [];
    const byKind = new Map<RecordKind, { lines: string[]; indexes: number[] }>();
    for (const item of protectItems(items as MappedItem[], batch.policy)) {
      if (!item.ok) {
        rejections.push(item);
        mapperRejections.push({ index: item.index, code: item.code, reason: item.reason, payload: item.payload, ...(item.dropped ? { dropped: true } : {}) });
        continue;
      }
      const group = byKind.get(item.kind) ?? { lines: [], indexes: [] };
      group.lines.push(item.line);
      group.indexes.push(item.index);
      byKind.set(item.kind, group);
    }
    let accepted = 0;
    const refused = new Map<RecordKind, RejectedItemRecord[]>();
    for (const [kind, group] of byKind) {
      if (kind === "event") await deps.importBudget?.spend(ndjsonBytes(group.lines));
      const outcomes: LineOutcome[] = await deps.client[SEND[kind]](group.lines);
      outcomes.forEach((outcome, position) => {
        const index = group.indexes[position] ?? -1;
        if (outcome.status === "imported") accepted += 1;
        else if (outcome.status === "rejected") {
          rejections.push({ ok: false, index, code: "mixpanel_rejected", reason: outcome.reason, payload: undefined });
          const list = refused.get(kind) ?? [];
          list.push({ index, code: "mixpanel_rejected", reason: outcome.reason, line: group.lines[position] });
          refused.set(kind, list);
        } else {
          throw new RetryableError(`Mixpanel did not take row ${index}: ${outcome.reason}; run again with --resume`);
        }
      });
    }
    const { source, correlationId } = batch;
    await Promise.all([
      mapperRejections.length > 0 ? deps.rejected.put({ source, correlationId, stageOfFailure: "intake", items: mapperRejections }) : undefined,
      ...[...refused].map(([kind, stored]) => deps.rejected.put({ source, kind, correlationId, stageOfFailure: "forwarder", items: stored })),
    ]);
    rejections.sort((a, b) => a.index - b.index);
    return { accepted, rejections };
  };
}
