import { describe, expect, it } from "vitest";
import { consumeEnvelopes, type EnvelopeConsumerDeps, type QueueMessage } from "../../lib/queue/envelope-consumer.js";
import { serializeEnvelope } from "../../lib/records/envelope.js";
import { parseQueuedRecords } from "../../lib/records/envelope-v2.js";
import type { BrevoServer } from "../../infra/local/peers/brevo-server.js";
import { PROFILES_WITH_COMPANIES, localBrevoClient, localBrevoSend, localBrevos, startBrevoWithAcme } from "../support/local-brevo.js";

/**
 * Records that wait for Brevo's companies bucket ("all other endpoints", 100 requests per hour on
 * the General tier; scaled down here) share SQS messages with records the invocation had no time
 * to try. Waiting for the bucket must not carry a record to the DLQ, however many 15-minute SQS
 * delays the hour takes, and untried records must come straight back.
 */
const API_KEY = "xkeysib-waits";
const HOUR_MS = 3_600_000;
const OTHER_LIMIT = 10;
const MAX_REQUEUES = 6;
const config = PROFILES_WITH_COMPANIES;
const startBrevo = localBrevos();
let brevo: BrevoServer;

interface Queued {
  readonly body: string;
  readonly dueAt: number;
  readonly delaySeconds: number;
}

async function setup() {
  let now = Date.UTC(2026, 0, 1);
  brevo = await startBrevoWithAcme(startBrevo, { apiKey: API_KEY, otherLimit: OTHER_LIMIT, now: () => now });
  /** Contact calls this invocation has time for; then the deadline. */
  let contactCallsAllowed = Number.POSITIVE_INFINITY;
  const contactCalls = () => brevo.calls.filter((c) => c.path.startsWith("/v3/contacts")).length;
  const timeLeftMs = () => (contactCalls() < contactCallsAllowed ? 300_000 : 0);
  const client = localBrevoClient(brevo, API_KEY, {
    fetch: globalThis.fetch,
    retryDeps: { sleep: async (ms) => void (now += ms), random: () => 0, remainingMs: timeLeftMs },
    now: () => now,
  });
  const queue: Queued[] = [];
  const deadLettered: string[] = [];
  const stored: unknown[] = [];
  const deps: EnvelopeConsumerDeps = {
    send: localBrevoSend(client, config, { companyIds: new Map(), pendingLinks: new Map(), timeLeftMs, now: () => now }),
    rejected: {
      put: async (batch) => {
        stored.push(batch);
        return "stored";
      },
    },
    rejectedCode: "brevo_rejected",
    stageOfFailure: "brevo",
    destination: "brevo",
    requeue: {
      maxRequeues: MAX_REQUEUES,
      send: async (body, delaySeconds) => void queue.push({ body, delaySeconds, dueAt: now + delaySeconds * 1000 }),
      deadLetter: async (body) => void deadLettered.push(body),
    },
    now: () => now,
  };
  return {
    deps,
    queue,
    deadLettered,
    stored,
    clock: { get: () => now, set: (ms: number) => void (now = ms) },
    allowContactCalls: (count: number) => void (contactCallsAllowed = contactCalls() + count),
  };
}

const profiles = (count: number) =>
  Array.from({ length: count }, (_, i) => JSON.stringify({ $distinct_id: `u${i}`, $set: { $first_name: `F${i}`, company_id: "acme" } }));
const message = (id: string, records: string[]): QueueMessage => ({
  messageId: id,
  body: serializeEnvelope({ v: 1, kind: "profile", source: "native", correlationId: `corr-${id}`, records }),
});

describe("Brevo records waiting for a rate-limit window", () => {
  it("wait for the bucket to reopen without spending re-queues, and untried records come back at once", async () => {
    const { deps, queue, deadLettered, stored, clock, allowContactCalls } = await setup();
    const lines = profiles(30);
    // Time for 20 contacts: the companies bucket (lookup + 9 links) closes at record 10, the deadline comes at record 21.
    allowContactCalls(20);
    const start = clock.get();
    const first = await consumeEnvelopes([message("m1", lines)], deps);
    expect(first).toMatchObject({ sent: 9, retried: 21, requeued: 1, deadLettered: 0, failedMessageIds: [] });

    const requeued = queue.splice(0).map(({ body, delaySeconds }) => {
      const envelope = parseQueuedRecords(body);
      return { records: envelope.lines(), attempt: envelope.attempt ?? 0, delaySeconds };
    });
    // The link-waiting records (contacts upserted) wait out the hour in 900 s SQS hops, attempt unchanged;
    // the records never tried come back at once, attempt unchanged.
    expect(requeued).toEqual([
      { records: lines.slice(9, 20), attempt: 0, delaySeconds: 900 },
      { records: lines.slice(20), attempt: 0, delaySeconds: 0 },
    ]);

    // SQS from here on: each round delivers every message that is due, in the time of a fresh invocation.
    for (const item of requeued) queue.push({ body: serializeEnvelope({ v: 1, kind: "profile", source: "native", correlationId: "corr-m1", records: [...item.records] }), delaySeconds: item.delaySeconds, dueAt: start + item.delaySeconds * 1000 });
    let rounds = 0;
    while (queue.length > 0 && rounds < 100) {
      rounds++;
      allowContactCalls(Number.POSITIVE_INFINITY);
      const dueAt = Math.min(...queue.map((q) => q.dueAt));
      clock.set(Math.max(clock.get(), dueAt));
      const due = queue.filter((q) => q.dueAt <= clock.get());
      queue.splice(0, queue.length, ...queue.filter((q) => q.dueAt > clock.get()));
      for (const item of due) expect(parseQueuedRecords(item.body).attempt ?? 0).toBe(0);
      const summary = await consumeEnvelopes(
        due.map((q, i) => ({ messageId: `r${rounds}-${i}`, body: q.body })),
        deps,
      );
      expect(summary.failedMessageIds).toEqual([]);
      expect(queue.every((q) => q.delaySeconds <= 900)).toBe(true);
    }
    // 21 links at 10 per hour: well past MAX_REQUEUES hops of 900 s, and none of them went to the DLQ.
    expect(rounds).toBeGreaterThan(MAX_REQUEUES);
    expect(queue).toEqual([]);
    expect(deadLettered).toEqual([]);
    expect(stored).toEqual([]);
    expect(brevo.contacts.size).toBe(30);
    expect(brevo.companies.get("c-acme")?.linkedContactsIds).toHaveLength(30);
    expect(clock.get() - start).toBeGreaterThanOrEqual(2 * HOUR_MS);
  });

});
