import { PutObjectCommand } from "@aws-sdk/client-s3";
import avro from "avsc";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LocalStack, startLocalStack } from "../../infra/local/stack.js";
import { avroFile } from "../unit/sources/avro-support.js";
import { eventually } from "../support/eventually.js";

/**
 * Braze Currents types outside Braze's Mixpanel connector (docs/vendors/braze-currents-labels.md,
 * "relay extension") go through the queue to Mixpanel under the relay's labels, on both
 * transports; only names in no published list are `unsupported_event_type`.
 */
let stack: LocalStack;
const NOW_S = () => Math.floor(Date.now() / 1000);


const brazeEvent = (eventType: string, n: number, user: Record<string, unknown> = { external_user_id: `ext-user-${n}` }) => ({
  event_type: eventType,
  id: `5e0c9a1e-0000-4000-8000-${String(n).padStart(12, "0")}`,
  time: NOW_S(),
  user,
  properties: { app_id: "app-1" },
});

beforeAll(async () => {
  stack = await startLocalStack({ visibilityTimeoutSeconds: 2 });
});
afterAll(() => stack.stop());

describe("Braze relay-extension event types", () => {
  it("forwards them over HTTP with the relay's labels; unknown names are rejected, users without external id dropped first", async () => {
    const response = await fetch(`${stack.intakeUrl}/v1/braze/currents`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${stack.intakeToken}` },
      body: JSON.stringify({
        events: [
          brazeEvent("users.messages.banner.Click", 1),
          brazeEvent("users.messages.webhook.Failure", 2),
          brazeEvent("agentconsole.ToolInvocation", 3),
          brazeEvent("users.messages.line.InboundReceive", 4),
          brazeEvent("users.messages.brandnew.Thing", 5),
          brazeEvent("users.messages.brandnew.Thing", 6, {}),
        ],
      }),
    });
    expect(response.status).toBe(202);
    expect(await response.json()).toMatchObject({
      accepted: 4,
      rejected: 1,
      dropped: 1,
      errors: [{ index: 4, code: "unsupported_event_type" }],
      dropped_items: [{ index: 5, code: "no_external_user_id" }],
    });
    const labels = await eventually(() => {
      const found = stack.sandbox?.events.filter((e) => String(e.properties.distinct_id).startsWith("ext-user-")) ?? [];
      return found.length === 4 ? found.map((e) => [e.properties.distinct_id, e.event]) : undefined;
    });
    expect(new Map(labels as [string, string][])).toEqual(
      new Map([
        ["ext-user-1", "Banner Click"],
        ["ext-user-2", "Webhook Failure"],
        ["ext-user-3", "Agent Console Tool Invocation"],
        ["ext-user-4", "LINE Inbound Received"],
      ]),
    );
  });

  it("forwards an Avro-only type (users.UserOrphan) read from the Currents bucket", async () => {
    const schema = {
      type: "record",
      name: "UserOrphan",
      fields: [
        { name: "id", type: "string" },
        { name: "time", type: "int" },
        { name: "external_user_id", type: ["null", "string"], default: null },
        { name: "orphaned_by_id", type: ["null", "string"], default: null },
      ],
    } as avro.Schema;
    await stack.s3.send(
      new PutObjectCommand({
        Bucket: stack.currentsBucket,
        Key: "currents/x/event_type=users.UserOrphan/date=2026-11-22-12/300/0/orphan.avro",
        Body: await avroFile(schema, [{ id: "5e0c9a1e-0000-4000-8000-0000000000a1", time: NOW_S(), external_user_id: "orphan-user", orphaned_by_id: "other" }]),
      }),
    );
    const arrived = await eventually(() => stack.sandbox?.events.find((e) => e.properties.distinct_id === "orphan-user"));
    expect(arrived.event).toBe("User Orphan");
    expect(arrived.properties.orphaned_by_id).toBe("other");
  });
});
