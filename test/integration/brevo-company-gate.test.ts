import { afterEach, describe, expect, it } from "vitest";
import { createBrevoClient } from "../../lib/brevo/client.js";
import { brevoConfigSchema } from "../../lib/config/brevo.js";
import { createBrevoSend } from "../../lib/forwarder/brevo.js";
import { consumeEnvelopes, type QueueMessage } from "../../lib/queue/envelope-consumer.js";
import { serializeEnvelope } from "../../lib/records/envelope.js";
import { parseQueuedRecords } from "../../lib/records/envelope-v2.js";
import { BrevoServer } from "../../infra/local/peers/brevo-server.js";

/**
 * Group records (companies) share a forwarder invocation with profile and event records. When
 * the "all other endpoints" bucket is closed (100 requests per hour on the General tier,
 * https://developers.brevo.com/docs/api-limits), a group record must be handed back to wait for
 * the window, not sleep in the invocation: a sleep there holds every contact and event behind it.
 */
const API_KEY = "xkeysib-company-gate";
const OTHER_WINDOW_MS = 60_000;
const config = brevoConfigSchema.parse({
  api_key_secret: "s",
  sync: { profiles: true, groups: true, events: true },
  identifiers: { ext_id: "distinct_id" },
  property_mapping: { $first_name: "FIRSTNAME" },
  companies: { group_keys: ["company_id"] },
});
let brevo: BrevoServer;
afterEach(() => brevo.close());

const message = (id: string, kind: "group" | "profile", records: string[]): QueueMessage => ({
  messageId: id,
  body: serializeEnvelope({ v: 1, kind, source: "native", correlationId: `corr-${id}`, records }),
});

describe("company work never holds contacts behind its rate-limit bucket", () => {
  it("a group record facing the closed companies bucket is re-queued until it reopens; the profiles after it go out without a wait", async () => {
    let now = Date.UTC(2026, 0, 1);
    const sleeps: number[] = [];
    brevo = new BrevoServer({ apiKey: API_KEY, listIds: [], limit: 100_000, windowMs: 1000, otherLimit: 2, otherWindowMs: OTHER_WINDOW_MS, now: () => now });
    await brevo.start();
    const client = createBrevoClient({
      addressPolicy: { allowPrivate: false, localStage: true },
      baseUrl: brevo.url,
      apiKey: async () => API_KEY,
      timeoutMs: 5_000,
      // Five minutes left: the companies window (60 s) would fit, so nothing but the rule stops a sleep.
      retryDeps: { sleep: async (ms) => void (sleeps.push(ms), (now += ms)), random: () => 0, remainingMs: () => 300_000 },
      now: () => now,
    });
    const requeued: { body: string; delaySeconds: number }[] = [];
    const summary = await consumeEnvelopes(
      [
        message("groups", "group", [
          JSON.stringify({ $group_key: "company_id", $group_id: "acme", $set: { $name: "Acme" } }),
          JSON.stringify({ $group_key: "company_id", $group_id: "globex", $set: { $name: "Globex" } }),
        ]),
        message("profiles", "profile", Array.from({ length: 20 }, (_, i) => JSON.stringify({ $distinct_id: `u${i}`, $set: { $first_name: `F${i}` } }))),
      ],
      {
        send: createBrevoSend({ client, config, identityMode: "simplified", eventsBatchSize: 100, companyIds: new Map(), pendingLinks: new Map(), now: () => now }),
        rejected: { put: async () => "stored" },
        rejectedCode: "brevo_rejected",
        stageOfFailure: "brevo",
        destination: "brevo",
        requeue: { maxRequeues: 3, send: async (body, delaySeconds) => void requeued.push({ body, delaySeconds }), deadLetter: async () => undefined },
        now: () => now,
      },
    );

    // Acme: lookup + create spend the bucket's 2 calls; Globex waits for the window.
    expect(sleeps).toEqual([]);
    expect(brevo.throttled).toBe(0);
    expect(brevo.contacts.size).toBe(20);
    expect([...brevo.companies.values()].map((c) => c.name)).toEqual(["Acme"]);
    expect(summary).toMatchObject({ sent: 21, retried: 1, deadLettered: 0, failedMessageIds: [] });
    expect(requeued).toHaveLength(1);
    const [waiting] = requeued;
    const envelope = parseQueuedRecords(waiting?.body ?? "");
    expect(envelope.lines()).toEqual([JSON.stringify({ $group_key: "company_id", $group_id: "globex", $set: { $name: "Globex" } })]);
    // Waits for the window, free of the DLQ count.
    expect(envelope.attempt ?? 0).toBe(0);
    expect(waiting?.delaySeconds).toBe(OTHER_WINDOW_MS / 1000);
  });
});
