import { describe, expect, it } from "vitest";
import { buildWebhookBody } from "../../../lib/destinations/webhook.js";
import { cohortSyncsSchema } from "../../../lib/config/cohort-syncs.js";
import { planPages } from "../../../lib/cohorts/plan.js";
import type { DeliveryPage, SyncAction } from "../../../lib/cohorts/messages.js";

/**
 * Mixpanel's webhook doc: `page_info.total_pages` is the number of messages for the given
 * `mixpanel_session_id`. Every page of one run, whatever its action, must agree with that.
 */
const [sync] = cohortSyncsSchema.parse([
  { id: "w", cohort_id: 7, destination: { type: "webhook", url: "https://h.example/x", signing_secret: "s" } },
]);

function pagesOfRun(runId: string, expected: Record<SyncAction, number>): DeliveryPage[] {
  const pages: DeliveryPage[] = [];
  for (const action of ["members", "add_members", "remove_members"] as const) {
    for (let page = 1; page <= expected[action]; page++) {
      pages.push({
        v: 1,
        sync_id: "w",
        run_id: runId,
        project_id: "1",
        cohort: { id: 7, name: "C", description: "" },
        action,
        page,
        total_pages: expected[action],
        members: [{ id: `${action}-${page}`, props: {} }],
      });
    }
  }
  return pages;
}

function sessionsAgreeWithTotals(pages: DeliveryPage[]): Map<string, { messages: number; totals: Set<number>; counts: Set<number> }> {
  const sessions = new Map<string, { messages: number; totals: Set<number>; counts: Set<number> }>();
  for (const page of pages) {
    const { parameters } = buildWebhookBody(page, sync!);
    const entry = sessions.get(parameters.mixpanel_session_id) ?? { messages: 0, totals: new Set(), counts: new Set() };
    entry.messages += 1;
    entry.totals.add(parameters.page_info.total_pages);
    entry.counts.add(parameters.page_info.page_count);
    sessions.set(parameters.mixpanel_session_id, entry);
  }
  return sessions;
}

describe("webhook sessions: total_pages counts the messages of its mixpanel_session_id", () => {
  it.each([
    ["an unchanged cohort (one empty add, one empty remove)", { full: false, send: 0, remove: 0 }],
    ["3 add pages and 2 remove pages", { full: false, send: 2500, remove: 1500 }],
    ["a full members sync of 4 pages", { full: true, send: 3100, remove: 0 }],
  ])("%s", (_name, run) => {
    const plan = planPages(sync!.destination, run.full, run.send, run.remove);
    const sessions = sessionsAgreeWithTotals(pagesOfRun("run-1", plan.expected));
    for (const [session, entry] of sessions) {
      expect(entry.totals.size, session).toBe(1);
      expect([...entry.totals][0], session).toBe(entry.messages);
      // page_count runs 1…total_pages inside the session.
      expect([...entry.counts].sort((a, b) => a - b), session).toEqual(Array.from({ length: entry.messages }, (_, i) => i + 1));
    }
  });

  it("one session per action of a run, each naming the run so an operator can trace it", () => {
    const sessions = [...sessionsAgreeWithTotals(pagesOfRun("run-9", { members: 0, add_members: 1, remove_members: 1 })).keys()];
    expect(sessions).toEqual(["run-9.add_members", "run-9.remove_members"]);
  });
});
