import { beforeEach, describe, expect, it } from "vitest";
import { brevoConfigSchema } from "../../lib/config/brevo.js";
import { type BrevoServer, MAX_EVENTS_BATCH_BYTES, MAX_EVENTS_PER_BATCH } from "../../infra/local/peers/brevo-server.js";
import { localBrevoClient, localBrevoSend, localBrevos } from "../support/local-brevo.js";

/** `POST /v3/events/batch` against the local Brevo, which enforces 200 events and 512 KB per request. */
const API_KEY = "xkeysib-batch";
const config = brevoConfigSchema.parse({
  api_key_secret: "s",
  sync: { events: true },
  identifiers: { ext_id: "distinct_id" },
  event_mapping: { Viewed: "viewed" },
});
const T = Date.now() - 60_000;
const startBrevo = localBrevos();
let brevo: BrevoServer;
beforeEach(async () => {
  brevo = await startBrevo({ apiKey: API_KEY });
});

const send = (eventsBatchSize: number) => localBrevoSend(localBrevoClient(brevo, API_KEY), config, { eventsBatchSize });

/** One Viewed event whose properties hold `bytes` of text. */
const viewed = (i: number, bytes: number) =>
  JSON.stringify({ event: "Viewed", properties: { distinct_id: `u${i % 37}`, time: T, $insert_id: `e${i}`, blob: "x".repeat(bytes), n: i } });

describe("Brevo events batch limits", () => {
  it("450 events of ~3 KB go in requests of ≤ 200 events and ≤ 512 KB, all taken", async () => {
    const lines = Array.from({ length: 450 }, (_, i) => viewed(i, 3000));
    const outcomes = await send(200)("event", lines);
    expect(outcomes.every((o) => o.status === "sent")).toBe(true);
    expect(brevo.events).toHaveLength(450);
    expect(brevo.eventBatches.every((b) => b.events <= MAX_EVENTS_PER_BATCH && b.bytes <= MAX_EVENTS_BATCH_BYTES)).toBe(true);
    // ~3 KB each: 512 KB holds ~170, so bytes cut the requests before the count does.
    expect(brevo.eventBatches.length).toBe(3);
    expect(brevo.calls.filter((c) => c.path === "/v3/events/batch").every((c) => c.status === 202)).toBe(true);
  });

  it("a batch size above Brevo's 200 is capped at 200 events per request", async () => {
    const lines = Array.from({ length: 450 }, (_, i) => viewed(i, 10));
    const outcomes = await send(1000)("event", lines);
    expect(outcomes.filter((o) => o.status === "sent")).toHaveLength(450);
    expect(brevo.eventBatches.map((b) => b.events)).toEqual([200, 200, 50]);
  });

  it("events of up to 50 KB of properties are split by bytes (never a 413)", async () => {
    const lines = Array.from({ length: 100 }, (_, i) => viewed(i, 45_000));
    const outcomes = await send(100)("event", lines);
    expect(outcomes.filter((o) => o.status === "sent")).toHaveLength(100);
    expect(brevo.calls.some((c) => c.status === 413)).toBe(false);
    expect(Math.max(...brevo.eventBatches.map((b) => b.bytes))).toBeLessThanOrEqual(MAX_EVENTS_BATCH_BYTES);
    expect(brevo.eventBatches.length).toBeGreaterThanOrEqual(9);
  });

  it("a 413 naming no event is split and retried: every event still arrives once", async () => {
    brevo.failNext({ status: 413, body: JSON.stringify({ code: "payload_too_large", message: "Request Entity Too Large" }), path: "/v3/events/batch" });
    const lines = Array.from({ length: 40 }, (_, i) => viewed(i, 100));
    const outcomes = await send(100)("event", lines);
    expect(outcomes.filter((o) => o.status === "sent")).toHaveLength(40);
    expect(brevo.events.map((e) => e.event_properties?.n)).toEqual(Array.from({ length: 40 }, (_, i) => i));
    expect(brevo.eventBatches.map((b) => b.events)).toEqual([20, 20]);
  });

  it("a 400 {code, message} naming no event is bisected down to the one event Brevo refuses; the other 199 go", async () => {
    brevo.refuseBatchWhen = (event) => (event as { event_properties?: { n?: number } }).event_properties?.n === 137;
    const lines = Array.from({ length: 200 }, (_, i) => viewed(i, 10));
    const outcomes = await send(200)("event", lines);
    const refused = outcomes.flatMap((o, i) => (o.status === "rejected" ? [[i, o.reason]] : []));
    expect(refused).toEqual([[137, "Brevo 400 invalid_parameter: events batch could not be processed"]]);
    expect(brevo.events).toHaveLength(199);
    // Halving 200 down to one event: one request per level that held it, plus its siblings.
    expect(brevo.calls.filter((c) => c.path === "/v3/events/batch").length).toBeLessThanOrEqual(2 * Math.ceil(Math.log2(200)) + 1);
  });
});
