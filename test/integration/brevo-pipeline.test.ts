import { readFileSync } from "node:fs";
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from "@aws-sdk/client-s3";
import { avroFile, schemaFor } from "../unit/sources/avro-support.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LocalStack, startLocalStack } from "../../infra/local/stack.js";
import { replayRejected } from "../../infra/replay-rejected.js";
import { main as gdpr } from "../../infra/gdpr.js";
import { LOCAL_GDPR_TOKEN, LOCAL_MIXPANEL_CREDENTIALS } from "../../infra/local/stack.js";
import { auditRecordSchema } from "../../lib/gdpr/deletion.js";
import { idDigest } from "../../lib/privacy/suppression.js";
import { SUPPRESSION_KEY } from "../../lib/privacy/suppression.js";
import { type RejectedBatch, rejectedBatchSchema } from "../../lib/queue/rejected-store.js";
import { eventually } from "../support/eventually.js";
import { writeStageConfig } from "../support/local-stack.js";

/**
 * HTTP intake → events queue → forwarder → local Mixpanel, and → Brevo queue → brevo-forwarder →
 * local Brevo, through the stack `npm start` runs with config/local.json's brevo block. Each side
 * keeps going while the other is down, and a record Brevo refused is stored and replayed to Brevo.
 */
let stack: LocalStack;
const NOW_S = () => Math.floor(Date.now() / 1000);

async function post(path: string, body: unknown, status = 202) {
  const response = await fetch(`${stack.intakeUrl}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${stack.intakeToken}` },
    body: JSON.stringify(body),
  });
  expect(response.status).toBe(status);
  return response.json();
}


async function brevoRejections(): Promise<{ key: string; batch: RejectedBatch }[]> {
  const listed = await stack.s3.send(new ListObjectsV2Command({ Bucket: stack.rejectedBucket, Prefix: "rejected/" }));
  const found: { key: string; batch: RejectedBatch }[] = [];
  for (const object of listed.Contents ?? []) {
    const got = await stack.s3.send(new GetObjectCommand({ Bucket: stack.rejectedBucket, Key: object.Key }));
    const batch = rejectedBatchSchema.parse(JSON.parse((await got.Body?.transformToString()) ?? "{}"));
    if (batch.destination === "brevo") found.push({ key: object.Key ?? "", batch });
  }
  return found;
}

const brevoEvent = (insertId: string) => stack.brevoSandbox?.events.find((e) => e.event_properties?.insert_id === insertId);
const mixpanelEvent = (insertId: string) => stack.sandbox?.events.find((e) => e.properties.$insert_id === insertId);

beforeAll(async () => {
  // config/local.json, plus forward_unmapped_events so a Braze Avro event (unmapped) reaches Brevo too.
  const local = JSON.parse(readFileSync("config/local.json", "utf8"));
  const configFile = writeStageConfig({ ...local, brevo: { ...local.brevo, forward_unmapped_events: true } }, "brevo-pipeline-");
  stack = await startLocalStack({
    configFile,
    // Outages below last a few seconds: keep redelivering instead of dead-lettering.
    maxReceiveCount: 100,
    visibilityTimeoutSeconds: 1,
    forwarderTimeoutMs: 10_000,
    brevoRateLimit: 1000,
    env: { HTTP_TIMEOUT_MS: "2000", SECRETS_TTL_SECONDS: "1" },
  });
});
afterAll(() => stack.stop());

describe("Mixpanel and Brevo from one intake", () => {
  it("a Purchase reaches Mixpanel as Purchase and Brevo as order_completed; a $set a contact on list 15; a group a company", async () => {
    await post("/v1/events", [{ event: "Purchase", properties: { distinct_id: "user-1", time: NOW_S(), amount: 42, $insert_id: "done-1" } }]);
    await post("/v1/profiles", [{ $distinct_id: "user-1", $set: { $email: "user-1@example.com", $first_name: "Ada", plan: "pro", other: 1 } }]);
    await post("/v1/groups", [{ $group_key: "company_id", $group_id: "acme", $set: { $name: "Acme Inc", domain: "acme.io" } }]);

    expect((await eventually(() => mixpanelEvent("done-1"))).event).toBe("Purchase");
    const sent = await eventually(() => brevoEvent("done-1"));
    expect(sent).toMatchObject({ event_name: "order_completed", identifiers: { ext_id: "user-1" }, event_properties: { amount: 42 } });
    await eventually(() => stack.brevoSandbox?.contacts.get("user-1@example.com"));
    expect(stack.brevoSandbox?.contacts.get("user-1@example.com")).toEqual({ FIRSTNAME: "Ada", PLAN_TYPE: "pro" });
    expect(stack.brevoSandbox?.contactIds.get("user-1@example.com")?.extId).toBe("user-1");
    expect(stack.brevoSandbox?.lists.get(15)?.has("user-1@example.com")).toBe(true);
    const company = await eventually(() => [...(stack.brevoSandbox?.companies.values() ?? [])].find((c) => c.attributes.mixpanel_group === "company_id:acme"));
    expect(company).toMatchObject({ name: "Acme Inc", attributes: { domain: "acme.io" } });
    await eventually(() => stack.sandbox?.profiles.get("user-1"));
  });

  it("an event from a Braze Currents Avro file fans out to Brevo too", async () => {
    const record = { id: "avro-brevo-1", user_id: "5f1d0c7e9d3b2a0012345678", external_user_id: "user-avro-1", time: NOW_S(), name: "Added To Cart", properties: JSON.stringify({ sku: "sku-1" }) };
    const file = await avroFile(schemaFor("CustomEvent", [record]), [record]);
    await stack.s3.send(
      new PutObjectCommand({
        Bucket: stack.currentsBucket,
        Key: "currents/dataexport.prod-01.S3.integration.abc/event_type=users.behaviors.CustomEvent/date=2026-11-22-12/300/0/part+0+0.avro",
        Body: file,
      }),
    );
    expect((await eventually(() => mixpanelEvent("avro-brevo-1"))).event).toBe("[Braze Custom Event] Added To Cart");
    expect(await eventually(() => brevoEvent("avro-brevo-1"))).toMatchObject({
      event_name: "_Braze_Custom_Event_Added_To_Cart",
      identifiers: { ext_id: "user-avro-1" },
      event_properties: { _Custom_event_property_sku: "sku-1" },
    });
  });

  it("Mixpanel delivery continues while Brevo is down; Brevo catches up afterwards", async () => {
    const brevo = stack.brevoSandbox;
    if (!brevo) throw new Error("no Brevo sandbox");
    brevo.outage = 503;
    try {
      await post("/v1/events", [{ event: "Purchase", properties: { distinct_id: "user-2", time: NOW_S(), $insert_id: "brevo-down-1" } }]);
      await eventually(() => mixpanelEvent("brevo-down-1"));
      expect(brevoEvent("brevo-down-1")).toBeUndefined();
      await eventually(() => brevo.calls.some((call) => call.status === 503 && call.path === "/v3/events/batch"));
    } finally {
      brevo.outage = undefined;
    }
    expect((await eventually(() => brevoEvent("brevo-down-1"))).event_name).toBe("order_completed");
    expect(brevo.events.filter((e) => e.event_properties?.insert_id === "brevo-down-1")).toHaveLength(1);
  });

  it("Brevo delivery continues while Mixpanel is down; Mixpanel catches up afterwards", async () => {
    const mixpanel = stack.sandbox;
    if (!mixpanel) throw new Error("no Mixpanel sandbox");
    mixpanel.failNext(...Array.from({ length: 500 }, () => ({ status: 503, path: "/import" })));
    await post("/v1/events", [{ event: "Purchase", properties: { distinct_id: "user-3", time: NOW_S(), $insert_id: "mixpanel-down-1" } }]);
    await eventually(() => brevoEvent("mixpanel-down-1"));
    await eventually(() => mixpanel.requests.some((request) => request.path === "/import" && request.status === 503));
    expect(mixpanelEvent("mixpanel-down-1")).toBeUndefined();
    mixpanel.reset(); // back up: forgets the scripted 503s
    await eventually(() => mixpanelEvent("mixpanel-down-1"));
  });

  it("a record Brevo refuses lands in the rejected store and replays to Brevo only", async () => {
    const brevo = stack.brevoSandbox;
    if (!brevo) throw new Error("no Brevo sandbox");
    brevo.failNext({ status: 400, path: "/v3/contacts", body: JSON.stringify({ code: "invalid_parameter", message: "Attribute PLAN_TYPE does not exist" }) });
    await post("/v1/profiles", [{ $distinct_id: "user-4", $set: { $email: "user-4@example.com", plan: "team" } }]);
    const [stored] = await eventually(async () => {
      const found = await brevoRejections();
      return found.length > 0 ? found : undefined;
    });
    expect(stored?.batch).toMatchObject({ stageOfFailure: "brevo", kind: "profile", source: "profiles" });
    expect(stored?.batch.items[0]).toMatchObject({ code: "brevo_rejected", reason: "Brevo 400 invalid_parameter: Attribute PLAN_TYPE does not exist" });
    expect(brevo.contacts.has("user-4@example.com")).toBe(false);
    await eventually(() => stack.sandbox?.profiles.get("user-4"));
    const engageCalls = () => stack.sandbox?.requests.filter((request) => request.path === "/engage").length ?? 0;
    const engageBefore = engageCalls();

    // The operator created the attribute in Brevo; now replay.
    const summary = await replayRejected({
      s3: stack.s3,
      sqs: stack.sqs,
      bucket: stack.rejectedBucket,
      queueUrl: stack.events.url,
      brevoQueueUrl: stack.brevo.url,
      filter: { code: "brevo_rejected", includeDropped: false },
      dryRun: false,
    });
    expect(summary.itemsReplayed).toBe(1);
    expect(await eventually(() => brevo.contacts.get("user-4@example.com"))).toEqual({ PLAN_TYPE: "team" });
    expect(await brevoRejections()).toEqual([]);
    // Not re-sent to Mixpanel, which had taken it.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(engageCalls()).toBe(engageBefore);
  });

  it("gdpr:delete files a Mixpanel deletion, deletes the Brevo contact and audits without the ids; gdpr:status follows it", async () => {
    const brevo = stack.brevoSandbox;
    const gdprApi = stack.gdprApi;
    if (!brevo || !gdprApi) throw new Error("no sandboxes");
    await post("/v1/profiles", [{ $distinct_id: "erase-me", $set: { $email: "erase-me@example.com", plan: "pro" } }]);
    await eventually(() => brevo.contacts.get("erase-me@example.com"));
    const env = {
      AWS_REGION: "us-east-1",
      AWS_ENDPOINT_URL: stack.awsEndpoint,
      MIXPANEL_GDPR_URL: `${stack.mixpanelUrl}/api/app`,
      MIXPANEL_GDPR_TOKEN: LOCAL_GDPR_TOKEN,
      MIXPANEL_PROJECT_TOKEN: LOCAL_MIXPANEL_CREDENTIALS.projectToken,
      BREVO_API_URL: stack.brevoUrl,
      BREVO_API_KEY: stack.env.BREVO_API_KEY,
    };
    const lines: string[] = [];
    const [record] = (await gdpr(["delete", "--stage", "local", "--distinct-id", "erase-me", "--distinct-id", "never-seen", "--compliance", "ccpa"], env, (line) => lines.push(line))) ?? [];
    expect(brevo.contacts.has("erase-me@example.com")).toBe(false);
    // By ext_id: erase-me deleted, never-seen absent; then the email read from erase-me's contact: already gone with it.
    expect(record?.brevo).toMatchObject({ deleted: 1, absent: 2, failed: 0 });
    expect(record?.brevo.identifiers?.map((line) => [line.type, line.outcome, line.source])).toEqual([
      ["ext_id", "deleted", "request"],
      ["email_id", "absent", "contact"],
      ["ext_id", "absent", "request"],
    ]);
    const [task] = [...gdprApi.tasks.values()];
    expect(task).toMatchObject({ distinctIds: ["erase-me", "never-seen"], compliance: "CCPA", status: "PENDING" });

    const listed = await stack.s3.send(new ListObjectsV2Command({ Bucket: stack.snapshotBucket, Prefix: "gdpr/" }));
    const keys = (listed.Contents ?? []).map((object) => object.Key ?? "");
    expect(keys).toContain(SUPPRESSION_KEY);
    const audits = keys.filter((key) => key !== SUPPRESSION_KEY);
    expect(audits).toHaveLength(1);
    const suppressedList = await stack.s3.send(new GetObjectCommand({ Bucket: stack.snapshotBucket, Key: SUPPRESSION_KEY }));
    const suppressedText = (await suppressedList.Body?.transformToString()) ?? "";
    expect(suppressedText).not.toContain("erase-me");
    // The email read from the contact joins the list too.
    expect(JSON.parse(suppressedText).digests).toEqual([idDigest("erase-me"), idDigest("never-seen"), idDigest("erase-me@example.com")].sort());
    const got = await stack.s3.send(new GetObjectCommand({ Bucket: stack.snapshotBucket, Key: audits[0] }));
    const text = (await got.Body?.transformToString()) ?? "";
    expect(text).not.toContain("erase-me");
    const stored = auditRecordSchema.parse(JSON.parse(text));
    expect(stored.idDigests).toEqual([idDigest("erase-me"), idDigest("never-seen")]);
    expect(stored.mixpanel).toEqual([{ taskId: task?.taskId, ids: 2, status: "PENDING" }]);

    await new Promise((resolve) => setTimeout(resolve, 1100)); // the GDPR API allows 1 request/s
    gdprApi.completeAll();
    const [after] = (await gdpr(["status", "--stage", "local"], env, (line) => lines.push(line))) ?? [];
    expect(after?.mixpanel[0]?.status).toBe("SUCCESS");
    expect(lines.at(-1)).toMatch(/complete/);

    // The erased id stays erased in Brevo: later records for it are skipped (after the list's cache
    // expires; SECRETS_TTL_SECONDS is short in this stack), records for others still go.
    await new Promise((resolve) => setTimeout(resolve, 1100));
    // Dropped at the intake (code erased) before either queue.
    expect(await post("/v1/profiles", [{ $distinct_id: "erase-me", $set: { $email: "erase-me@example.com", plan: "again" } }], 200)).toMatchObject({ dropped: 1 });
    expect(await post("/v1/events", [{ event: "Purchase", properties: { distinct_id: "erase-me", time: NOW_S(), $insert_id: "after-erase" } }], 200)).toMatchObject({ dropped: 1 });
    await post("/v1/profiles", [{ $distinct_id: "after-erase-other", $set: { $email: "other@example.com" } }]);
    await eventually(() => brevo.contacts.get("other@example.com"));
    expect(mixpanelEvent("after-erase")).toBeUndefined();
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect(brevo.contacts.has("erase-me@example.com")).toBe(false);
    expect(brevoEvent("after-erase")).toBeUndefined();
  });
});
