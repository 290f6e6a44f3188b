import { ListObjectsV2Command, PutObjectCommand } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LocalStack, startLocalStack } from "../../infra/local/stack.js";

/** What `npm start` keeps in memory stays bounded: old rejected batches, Currents files, cohort runs and sandbox events go. */
let stack: LocalStack;
const NOW_S = () => Math.floor(Date.now() / 1000);

async function keys(bucket: string, prefix = ""): Promise<string[]> {
  const listed = await stack.s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix || undefined }));
  return (listed.Contents ?? []).map((object) => object.Key ?? "").sort();
}

async function post(body: unknown) {
  const response = await fetch(`${stack.intakeUrl}/v1/events`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${stack.intakeToken}`, "x-correlation-id": `bounded-${String(body).length}-${Math.random().toString(36).slice(2)}` },
    body: JSON.stringify(body),
  });
  return (await response.json()) as Record<string, unknown>;
}

beforeAll(async () => {
  stack = await startLocalStack({
    visibilityTimeoutSeconds: 2,
    retention: { maxRejectedObjects: 3, maxCurrentsObjects: 2, cohortRunMaxAgeMs: 50, maxSandboxEvents: 5, intervalMs: 3_600_000 },
  });
});
afterAll(() => stack.stop());

describe("local stack retention", () => {
  it("keeps only the newest rejected batches", async () => {
    const ids: unknown[] = [];
    for (let i = 0; i < 6; i++) {
      ids.push((await post([{ event: "Bad", properties: { distinct_id: "null", time: NOW_S() } }])).correlationId);
      await new Promise((resolve) => setTimeout(resolve, 15));
    }
    expect(await keys(stack.rejectedBucket)).toHaveLength(6);
    expect(await stack.retention?.passOnce()).toBeGreaterThanOrEqual(3);
    const kept = await keys(stack.rejectedBucket);
    expect(kept).toHaveLength(3);
    for (const id of ids.slice(3)) expect(kept.some((key) => key.includes(String(id)))).toBe(true);
  });

  it("expires cohort runs by age but keeps the live cohort state, and bounds the Currents bucket", async () => {
    await stack.s3.send(new PutObjectCommand({ Bucket: stack.snapshotBucket, Key: "cohort-runs/pro/run-1/pages/000001.json.gz", Body: "x" }));
    await stack.s3.send(new PutObjectCommand({ Bucket: stack.snapshotBucket, Key: "cohorts/pro/state.json", Body: "{}" }));
    // Not Avro: the reader files them as unreadable, which is fine here; only the count matters.
    for (let i = 0; i < 4; i++) await stack.s3.send(new PutObjectCommand({ Bucket: stack.currentsBucket, Key: `currents/event_type=users.behaviors.Purchase/f${i}.avro`, Body: "x" }));
    await new Promise((resolve) => setTimeout(resolve, 100));
    await stack.retention?.passOnce();
    expect(await keys(stack.snapshotBucket, "cohort-runs/")).toEqual([]);
    expect(await keys(stack.snapshotBucket, "cohorts/")).toEqual(["cohorts/pro/state.json"]);
    expect(await keys(stack.currentsBucket)).toHaveLength(2);
    // The notifier forgets the deleted files too (what it remembers stays bounded).
    const deadline = Date.now() + 5_000;
    while (stack.currentsNotifier.rememberedKeys !== 2 && Date.now() < deadline) {
      await stack.currentsNotifier.scanOnce();
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(stack.currentsNotifier.rememberedKeys).toBe(2);
  });

  it("keeps only the newest events in the Mixpanel sandbox", async () => {
    stack.sandbox?.reset();
    await post(Array.from({ length: 8 }, (_, i) => ({ event: `Kept ${i}`, properties: { distinct_id: "u-bounded", time: NOW_S() } })));
    const deadline = Date.now() + 15_000;
    while ((stack.sandbox?.events.length ?? 0) < 8 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
    await stack.retention?.passOnce();
    expect(stack.sandbox?.events.map((e) => e.event)).toEqual(["Kept 3", "Kept 4", "Kept 5", "Kept 6", "Kept 7"]);
  });
});
