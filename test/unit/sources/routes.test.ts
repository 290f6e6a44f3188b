import { describe, expect, it } from "vitest";
import { type HttpRequest, type IntakeDeps, handleIntake } from "../../../lib/intake/process.js";
import { findRoute } from "../../../lib/intake/routes.js";
import type { RejectedStore } from "../../../lib/queue/rejected-store.js";
import { parseEnvelope } from "../../../lib/records/envelope.js";
import { NOW_MS, brazeFixtures, context } from "./support.js";

/**
 * The source routes through the lead's intake (auth, parsing, packing, response): only
 * the AWS edges (SQS sender, S3 rejected store) are in-memory stand-ins.
 */
const TOKEN = "route-test-token-0123456789";

function harness(config: Record<string, unknown> = {}) {
  const sent: string[] = [];
  const rejectedBatches: Parameters<RejectedStore["put"]>[0][] = [];
  const deps: IntakeDeps = {
    config: context(config).config,
    tokens: async () => [TOKEN],
    queue: { send: async (_url, bodies) => void sent.push(...bodies) },
    queueUrl: "http://queue.local/events",
    rejected: { put: async (batch) => (rejectedBatches.push(batch), "key") },
    maxMessageBytes: 262_144,
    maxBodyBytes: 5_000_000,
    nowMs: () => NOW_MS,
    newCorrelationId: () => "corr-1",
  };
  return { deps, sent, rejectedBatches };
}

function post(path: string, body: unknown, headers: Record<string, string> = {}): HttpRequest {
  return {
    method: "POST",
    path,
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json", ...headers },
    query: {},
    body: body === undefined ? undefined : Buffer.from(typeof body === "string" ? body : JSON.stringify(body)),
  };
}

function responseBody(result: { response: { body: string } }): Record<string, unknown> {
  return JSON.parse(result.response.body);
}

describe("source routes", () => {
  it("registers every source path", () => {
    for (const path of ["/v1/braze/currents", "/v1/adobe/events", "/v1/profiles", "/v1/groups"]) expect(findRoute(path)?.path).toBe(path);
    expect(findRoute("/v1/braze/currents")?.allowEmptyBody).toBe(true);
  });

  it("queues a Braze fixture batch and reports the anonymous user as dropped, not as an error", async () => {
    const { deps, sent } = harness();
    const events = brazeFixtures().map((fixture) => fixture.event);
    const anonymous = { ...events[0], user: { user_id: "braze-only" } };
    const result = await handleIntake(post("/v1/braze/currents", { events: [...events, anonymous] }, { "braze-currents-version": "1" }), deps);
    expect(result.response.statusCode).toBe(202);
    expect(responseBody(result)).toMatchObject({ accepted: events.length, rejected: 0, dropped: 1, errors: [] });
    const envelopes = sent.map(parseEnvelope);
    expect(envelopes.every((envelope) => envelope.source === "braze" && envelope.kind === "event")).toBe(true);
    expect(envelopes.flatMap((envelope) => envelope.records)).toHaveLength(events.length);
  });

  it("answers an empty Braze batch after checking the token", async () => {
    const { deps, sent } = harness();
    expect((await handleIntake(post("/v1/braze/currents", undefined), deps)).response.statusCode).toBe(200);
    expect((await handleIntake(post("/v1/braze/currents", { events: [] }), deps)).response.statusCode).toBe(200);
    const unauthorized = await handleIntake(post("/v1/braze/currents", undefined, { authorization: "Bearer wrong-token-0000000000" }), deps);
    expect(unauthorized.response.statusCode).toBe(401);
    expect(sent).toEqual([]);
  });

  it("maps batches with an unknown Braze-Currents-Version instead of refusing them", async () => {
    const { deps, sent } = harness();
    const event = brazeFixtures()[0]?.event;
    const result = await handleIntake(post("/v1/braze/currents", { events: [event] }, { "braze-currents-version": "2" }), deps);
    expect(result.response.statusCode).toBe(202);
    expect(sent).toHaveLength(1);
  });

  it("answers 400 for a Braze body that is not the envelope, and 2xx with per-event errors otherwise", async () => {
    const { deps, rejectedBatches } = harness();
    expect((await handleIntake(post("/v1/braze/currents", [{ event_type: "x" }]), deps)).response.statusCode).toBe(400);
    const mixed = await handleIntake(post("/v1/braze/currents", { events: [{ event_type: "users.new.Kind", id: "x", user: { external_user_id: "u1" } }] }), deps);
    expect(mixed.response.statusCode).toBe(200);
    expect(responseBody(mixed)).toMatchObject({ accepted: 0, rejected: 1, errors: [{ index: 0, code: "unsupported_event_type" }] });
    expect(rejectedBatches.at(-1)?.items[0]?.code).toBe("unsupported_event_type");
  });

  it("routes Adobe events, profiles and groups to envelopes of the right kind", async () => {
    const { deps, sent } = harness();
    const time = Math.floor(NOW_MS / 1000) - 60;
    const adobe = await handleIntake(post("/v1/adobe/events", { event: "buy", properties: { token: "t", time: String(time), distinct_id: "u1" } }), deps);
    const profiles = await handleIntake(post("/v1/profiles", [{ $distinct_id: "u1", $set: { plan: "pro" } }]), deps);
    const groups = await handleIntake(post("/v1/groups", { updates: [{ $group_key: "company_id", $group_id: "acme", $set: { n: 1 } }] }), deps);
    for (const result of [adobe, profiles, groups]) expect(result.response.statusCode).toBe(202);
    expect(sent.map(parseEnvelope).map((envelope) => [envelope.source, envelope.kind])).toEqual([
      ["adobe", "event"],
      ["profiles", "profile"],
      ["groups", "group"],
    ]);
  });

  it("answers invalid_property_name for an item with a __proto__ key and queues the rest unchanged", async () => {
    const { deps, sent, rejectedBatches } = harness();
    const time = Math.floor(NOW_MS / 1000) - 60;
    // Raw text, as a sender posts it: the intake's JSON.parse makes "__proto__" an own key.
    const events = await handleIntake(
      post(
        "/v1/events",
        `[{"event":"A","properties":{"distinct_id":"u","time":${time},"__proto__":{"x":1}}},{"event":"B","properties":{"distinct_id":"u","time":${time},"k":1}}]`,
      ),
      deps,
    );
    const profiles = await handleIntake(post("/v1/profiles", '[{"$distinct_id":"u","$set":{"__proto__":{"a":1}}}]'), deps);
    expect(events.response.statusCode).toBe(202);
    expect(responseBody(events)).toMatchObject({ accepted: 1, rejected: 1, errors: [{ index: 0, code: "invalid_property_name" }] });
    expect(responseBody(profiles)).toMatchObject({ accepted: 0, rejected: 1, errors: [{ index: 0, code: "invalid_property_name" }] });
    const queued = sent.map(parseEnvelope).flatMap((envelope) => envelope.records.map((line) => JSON.parse(line)));
    expect(queued).toHaveLength(1);
    expect(queued[0]).toMatchObject({ event: "B", properties: { k: 1 } });
    // The rejected store gets the item as received, key included, for a fixed replay.
    expect(JSON.stringify(rejectedBatches[0]?.items[0]?.payload)).toContain('"__proto__":{"x":1}');
  });
});
