import { GetObjectCommand, ListObjectsV2Command } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { type LocalStack, startLocalStack } from "../../infra/local/stack.js";
import { rejectedBatchSchema, type RejectedBatch } from "../../lib/queue/rejected-store.js";
import { eventually } from "../support/eventually.js";

/**
 * intake → events queue → forwarder → a Mixpanel whose /import answer disagrees with itself
 * (`num_records_imported` vs what it names as failed): the records it does not account for are
 * never counted as imported; they land in the rejected store with Mixpanel's answer.
 */
let stack: LocalStack;
const NOW_S = () => Math.floor(Date.now() / 1000);

async function post(body: unknown) {
  const response = await fetch(`${stack.intakeUrl}/v1/events`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${stack.intakeToken}` },
    body: JSON.stringify(body),
  });
  return (await response.json()) as Record<string, unknown>;
}


async function forwarderRejections(correlationId: unknown): Promise<RejectedBatch | undefined> {
  const listed = await stack.s3.send(new ListObjectsV2Command({ Bucket: stack.rejectedBucket, Prefix: "rejected/native/" }));
  for (const object of listed.Contents ?? []) {
    if (!object.Key?.includes(`${String(correlationId)}-forwarder`)) continue;
    const got = await stack.s3.send(new GetObjectCommand({ Bucket: stack.rejectedBucket, Key: object.Key }));
    return rejectedBatchSchema.parse(JSON.parse((await got.Body?.transformToString()) ?? ""));
  }
  return undefined;
}

const twoEvents = (prefix: string) => [
  { event: "Counted", properties: { distinct_id: "u-count", time: NOW_S(), $insert_id: `${prefix}-1` } },
  { event: "Counted", properties: { distinct_id: "u-count", time: NOW_S(), $insert_id: `${prefix}-2` } },
];

beforeAll(async () => {
  stack = await startLocalStack({ visibilityTimeoutSeconds: 2 });
});
afterAll(() => stack.stop());
beforeEach(() => stack.sandbox?.reset());

const insertIds = (batch: RejectedBatch) => batch.items.map((item) => JSON.parse(item.line ?? "{}").properties.$insert_id).sort();

describe("/import answers whose count disagrees", () => {
  it("400 with failed_records: [] keeps every record of the request", async () => {
    stack.sandbox?.failNext({
      path: "/import",
      status: 400,
      body: JSON.stringify({ code: 400, error: "some data points in the request failed validation", num_records_imported: 0, status: "Bad Request", failed_records: [] }),
    });
    const response = await post(twoEvents("empty-failures"));
    const batch = await eventually(() => forwarderRejections(response.correlationId));
    expect(insertIds(batch)).toEqual(["empty-failures-1", "empty-failures-2"]);
    expect(batch.items[0]?.reason).toContain("num_records_imported 0");
  });

  it("200 that imported fewer than sent keeps the batch", async () => {
    stack.sandbox?.failNext({ path: "/import", status: 200, body: JSON.stringify({ code: 200, num_records_imported: 1, status: "OK" }) });
    const response = await post(twoEvents("short-count"));
    const batch = await eventually(() => forwarderRejections(response.correlationId));
    expect(insertIds(batch)).toEqual(["short-count-1", "short-count-2"]);
  });

  it("400 naming one failure but counting none imported keeps the other record too", async () => {
    stack.sandbox?.failNext({
      path: "/import",
      status: 400,
      body: JSON.stringify({
        code: 400,
        error: "some data points in the request failed validation",
        num_records_imported: 0,
        status: "Bad Request",
        failed_records: [{ index: 0, insert_id: "one-named-1", field: "properties.time", message: "'properties.time' is invalid" }],
      }),
    });
    const response = await post(twoEvents("one-named"));
    const batch = await eventually(() => forwarderRejections(response.correlationId));
    expect(insertIds(batch)).toEqual(["one-named-1", "one-named-2"]);
    expect(batch.items.find((item) => item.reason.includes("properties.time"))).toBeDefined();
  });

  it("an answer that agrees still counts as imported (nothing stored)", async () => {
    stack.sandbox?.failNext({ path: "/import", status: 200, body: JSON.stringify({ code: 200, num_records_imported: 2, status: "OK" }) });
    const response = await post(twoEvents("agrees"));
    await eventually(async () => ((stack.sandbox?.requests.filter((r) => r.path === "/import").length ?? 0) > 0 ? true : undefined));
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(await forwarderRejections(response.correlationId)).toBeUndefined();
  });
});
