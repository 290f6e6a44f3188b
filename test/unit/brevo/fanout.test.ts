import { describe, expect, it } from "vitest";
import { brevoConfigSchema } from "../../../lib/brevo/config.js";
import { brevoQueueBodies } from "../../../lib/brevo/fanout.js";
import { parseEnvelope } from "../../../lib/records/envelope.js";

const config = (sync: Record<string, boolean>) => brevoConfigSchema.parse({ api_key_secret: "s", sync });
const lines = new Map([
  ["event" as const, ['{"event":"Purchase","properties":{}}', '{"event":"Other","properties":{}}']],
  ["profile" as const, ['{"$distinct_id":"u","$set":{}}']],
  ["group" as const, ['{"$group_key":"k","$group_id":"g","$set":{}}']],
]);

describe("fan-out to the Brevo queue", () => {
  it("queues the same records, in the same envelope, only for the kinds brevo.sync enables", () => {
    const bodies = brevoQueueBodies(config({ events: true, groups: true }), lines, "native", "corr-1", 262_144).map(parseEnvelope);
    expect(bodies.map(({ kind, source, correlationId, records }) => ({ kind, source, correlationId, records }))).toEqual([
      { kind: "event", source: "native", correlationId: "corr-1", records: lines.get("event") },
      { kind: "group", source: "native", correlationId: "corr-1", records: lines.get("group") },
    ]);
  });

  it("queues nothing without a brevo block or with every kind off", () => {
    expect(brevoQueueBodies(undefined, lines, "native", "c", 262_144)).toEqual([]);
    expect(brevoQueueBodies(config({}), lines, "native", "c", 262_144)).toEqual([]);
  });

  it("leaves out a record too large for one message (already refused for Mixpanel) and packs the rest", () => {
    const big = `{"event":"Big","properties":{"x":"${"y".repeat(3000)}"}}`;
    const bodies = brevoQueueBodies(config({ events: true }), new Map([["event" as const, [big, "{\"event\":\"a\",\"properties\":{}}"]]]), "native", "c", 2048);
    expect(bodies.flatMap((body) => parseEnvelope(body).records)).toEqual(['{"event":"a","properties":{}}']);
  });
});
