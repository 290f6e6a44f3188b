import { rmSync } from "node:fs";
import { dirname } from "node:path";
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LOCAL_MIXPANEL_CREDENTIALS, type LocalStack, startLocalStack } from "../../infra/local/stack.js";
import { SUPPRESSION_KEY, withSuppressedIds } from "../../lib/privacy/suppression.js";
import { eventually } from "../support/eventually.js";
import { writeStageConfig } from "../support/local-stack.js";

/**
 * Erased people stay erased: with ids on the erased-ids list, a late event, profile or group update
 * for them is dropped at the intake (code `erased`, counted), reaches neither the local Mixpanel
 * nor the rejected store, and an expired suppression lets records through again.
 */
const PREFIX = "/_mp";
const TOKEN = LOCAL_MIXPANEL_CREDENTIALS.projectToken;
const DAY_MS = 86_400_000;
let stack: LocalStack;
let dir = "";

beforeAll(async () => {
  const configFile = writeStageConfig({ mixpanel_compat: { path_prefix: PREFIX, project_tokens: [TOKEN] } }, "relay-erased-");
  dir = dirname(configFile);
  stack = await startLocalStack({ configFile, visibilityTimeoutSeconds: 2 });
  // Written before the first request, so the intake's first read of the list (then cached) sees it.
  let list = withSuppressedIds({ digests: [] }, ["erased-user", "erased@example.com"]);
  list = withSuppressedIds(list, ["paused-user"], { expiresAtMs: Date.now() - DAY_MS });
  list = withSuppressedIds(list, ["held-user"], { expiresAtMs: Date.now() + 30 * DAY_MS });
  await stack.s3.send(new PutObjectCommand({ Bucket: stack.snapshotBucket, Key: SUPPRESSION_KEY, Body: JSON.stringify(list) }));
});
afterAll(async () => {
  await stack?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const arrived = (name: string) => stack.sandbox?.events.filter((event) => event.event === name) ?? [];
const track = (events: unknown[]) =>
  fetch(`${stack.intakeUrl}${PREFIX}/track?verbose=1`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(events),
  });
const event = (name: string, distinctId: string, properties: Record<string, unknown> = {}) => ({
  event: name,
  properties: { token: TOKEN, distinct_id: distinctId, time: Date.now(), $insert_id: `${name}-${distinctId}`.slice(0, 36), ...properties },
});

async function storedRejections(): Promise<string> {
  const listed = await stack.s3.send(new ListObjectsV2Command({ Bucket: stack.rejectedBucket }));
  let text = "";
  for (const object of listed.Contents ?? []) {
    const got = await stack.s3.send(new GetObjectCommand({ Bucket: stack.rejectedBucket, Key: object.Key }));
    text += await got.Body!.transformToString();
  }
  return text;
}

describe("erased ids at the edge", () => {
  it("a late /track event of an erased id is dropped, never reaches Mixpanel nor the rejected store; an expired suppression lets events through", async () => {
    const response = await track([
      event("Late Event", "erased-user", { secret_note: "late-payload-marker" }),
      event("Late Event", "held-user"),
      event("Late Event", "paused-user"),
      event("Late Event", "someone-else"),
      event("Late Event", "device-only", { $user_id: "erased-user" }),
    ]);
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ status: 1 });
    const delivered = await eventually(() => (arrived("Late Event").length >= 2 ? arrived("Late Event") : undefined));
    // A later batch drains behind the first, so nothing of the first is still on its way.
    await track([event("Marker", "someone-else")]);
    await eventually(() => (arrived("Marker").length >= 1 ? true : undefined));
    expect(delivered.map((got) => got.properties.distinct_id).sort()).toEqual(["paused-user", "someone-else"]);
    const stored = await storedRejections();
    expect(stored).not.toContain("late-payload-marker");
    expect(stored).not.toContain("erased-user");
  });

  it("the /v1 answer counts them as dropped with code erased, for events and profile updates", async () => {
    const headers = { authorization: `Bearer ${stack.intakeToken}`, "content-type": "application/json" };
    const events = await fetch(`${stack.intakeUrl}/v1/events`, {
      method: "POST",
      headers,
      body: JSON.stringify([
        { event: "V1 Late", properties: { distinct_id: "erased-user", time: Date.now() } },
        { event: "V1 Late", properties: { distinct_id: "v1-user", time: Date.now(), $email: "x@example.com" } },
      ]),
    });
    expect(events.status).toBe(202);
    expect(await events.json()).toMatchObject({ accepted: 1, rejected: 0, dropped: 1, dropped_items: [{ index: 0, code: "erased" }] });

    const profiles = await fetch(`${stack.intakeUrl}/v1/profiles`, {
      method: "POST",
      headers,
      body: JSON.stringify([{ $distinct_id: "erased-user", $set: { plan: "pro" } }]),
    });
    expect(await profiles.json()).toMatchObject({ accepted: 0, dropped: 1, dropped_items: [{ index: 0, code: "erased" }] });
    const stored = await storedRejections();
    expect(stored).not.toContain("erased-user");
  });
});
