import type { Destination } from "../config/cohort-syncs.js";
import { type ExpectedPages, PAGE_SIZE, type SyncAction } from "./messages.js";

/**
 * Which pages a run sends (pure). Webhooks follow Mixpanel exactly: a full sync
 * is `members` only (the receiver replaces its copy, so even an empty cohort
 * gets one empty page); a diff sends `add_members` and `remove_members`, empty
 * ones included when nothing changed (Mixpanel does; `empty_diff_calls`).
 * Brevo and Braze keep state per contact, so a full sync is `members` plus the
 * `remove_members` of whoever left since the last snapshot, and nothing is sent
 * when nothing changed.
 */
export interface PagePlan {
  readonly primary: Extract<SyncAction, "members" | "add_members">;
  readonly expected: ExpectedPages;
}

export const pagesFor = (count: number) => Math.ceil(count / PAGE_SIZE);

export function planPages(destination: Destination, full: boolean, sendCount: number, removeCount: number): PagePlan {
  const isWebhook = destination.type === "webhook";
  const emptyCalls = isWebhook && destination.empty_diff_calls;
  if (full) {
    return {
      primary: "members",
      expected: {
        members: isWebhook ? Math.max(1, pagesFor(sendCount)) : pagesFor(sendCount),
        add_members: 0,
        remove_members: isWebhook ? 0 : pagesFor(removeCount),
      },
    };
  }
  const floor = emptyCalls ? 1 : 0;
  return {
    primary: "add_members",
    expected: {
      members: 0,
      add_members: Math.max(floor, pagesFor(sendCount)),
      remove_members: Math.max(floor, pagesFor(removeCount)),
    },
  };
}

export const totalPages = (expected: ExpectedPages) =>
  expected.members + expected.add_members + expected.remove_members;

/** Splits a stream of members into pages of PAGE_SIZE (pure helper for the emitter and the bench). */
export function* chunk<T>(items: Iterable<T>, size: number = PAGE_SIZE): Generator<T[]> {
  let current: T[] = [];
  for (const item of items) {
    current.push(item);
    if (current.length === size) {
      yield current;
      current = [];
    }
  }
  if (current.length > 0) yield current;
}
