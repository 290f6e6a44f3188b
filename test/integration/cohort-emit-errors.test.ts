import { DeleteObjectCommand, ListBucketsCommand } from "@aws-sdk/client-s3";
import { afterEach, describe, expect, it } from "vitest";
import type { ExportDeps, ExportLog } from "../../lib/cohorts/export.js";
import { CorruptIdentityError, parseIdentity } from "../../lib/cohorts/identity.js";
import { decodeSnapshot, encodeSnapshot } from "../../lib/cohorts/snapshot-codec.js";
import { keys } from "../../lib/cohorts/store.js";
import { MissingObjectError, RetryableError, ValidationError } from "../../lib/util/errors.js";
import { WebhookReceiver } from "../../infra/local/peers/webhook-server.js";
import { type Harness, startHarness } from "../unit/cohorts/harness.js";

/**
 * What the emit step does with stored objects it cannot use: a stored identity that
 * is not JSON is reported (metric and error log with its reason) while the member is
 * still removed by id; an object of the run that is gone is one error class wherever
 * it is read. Both for a run of one partition and a run split in partitions.
 */
const SIGNING = "whsec-0123456789abcdef";
const MIN = 60_000;
const SYNC = "hook";

function limits(overrides: Partial<ExportDeps["limits"]> = {}): ExportDeps["limits"] {
  return { queriesPerHour: 55, queriesPerRun: 20, concurrency: 3, deliveryTimeoutMs: 86_400_000, fetchMarginMs: 1, emitMarginMs: 1, tickMs: MIN, ...overrides };
}

describe("parseIdentity", () => {
  it("reads the identities identityOf writes and names what is wrong with any other text", () => {
    expect(parseIdentity("")).toEqual({});
    expect(parseIdentity('{"$email":"a@example.com"}')).toEqual({ $email: "a@example.com" });
    for (const [text, reason] of [
      ['{"$email":"a@exa', "is not JSON"],
      ["[1,2]", "is not a JSON object"],
      ["null", "is not a JSON object"],
      ['"a@example.com"', "is not a JSON object"],
    ] as const) {
      let thrown: unknown;
      try {
        parseIdentity(text);
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toBeInstanceOf(CorruptIdentityError);
      expect((thrown as CorruptIdentityError).reason).toBe(reason);
    }
  });
});

describe.each([
  ["one partition", {}],
  ["two partitions", { partitionMembers: 4, invocationWorkMs: 600_000 }],
] as const)("cohort emit, %s", (_name, partitioning) => {
  let h: Harness;
  let receiver: WebhookReceiver;

  async function setup() {
    receiver = new WebhookReceiver({ signingSecret: SIGNING, now: () => h.clock.now() });
    const url = await receiver.start();
    h = await startHarness({
      cohorts: [{ id: 7, name: "Power users", where: (p) => p.plan === "pro" }],
      syncs: [{ id: SYNC, cohort_id: 7, schedule: "rate(30 minutes)", destination: { type: "webhook", url, signing_secret: "s/hook" } }],
    });
    h.secrets.setSecret("s/hook", { secret: SIGNING });
    for (let i = 1; i <= 8; i++) h.profiles.set(`u${i}`, { plan: "pro", $email: `u${i}@example.com` });
  }
  const tick = (overrides: Partial<ExportDeps> = {}, limitOverrides: Partial<ExportDeps["limits"]> = {}) =>
    h.runExport({}, { limits: limits({ ...partitioning, ...limitOverrides }), ...overrides });

  async function deleteObject(key: string): Promise<void> {
    const { Buckets } = await h.s3.send(new ListBucketsCommand({}));
    const bucket = Buckets?.find((b) => b.Name?.startsWith("snapshots-"))?.Name;
    await h.s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
  }

  afterEach(async () => {
    await receiver?.close();
    await h?.close();
  });

  it("removes a member whose stored identity is corrupt by its id, and reports the corruption with its reason", async () => {
    await setup();
    await tick();
    await h.drain();
    h.clock.advance(MIN);
    expect((await tick()).syncs[SYNC]?.outcome).toBe("advanced");

    // One stored identity damaged in every snapshot object the sync has.
    const state = await h.store.readState(SYNC);
    const parts = state.snapshot?.partitions ?? 1;
    const snapshotKeys = parts === 1 ? [keys.snapshot(SYNC)] : Array.from({ length: parts }, (_, p) => keys.snapshotPart(SYNC, p, parts));
    let damaged = 0;
    for (const key of snapshotKeys) {
      const bytes = await h.store.getBytes(key);
      if (!bytes) throw new Error(`${key} absent`);
      const { header, columns } = await decodeSnapshot(bytes);
      const row = columns.ids.indexOf("u3");
      if (row < 0) continue;
      columns.identities[row] = '{"$email":"u3@exa';
      damaged++;
      const rows = Array.from({ length: columns.ids.length }, (_, i) => i);
      await h.store.putBytes(key, await encodeSnapshot({ ...header, v: 2 }, columns, rows));
    }
    expect(damaged).toBe(1);

    h.profiles.set("u3", { plan: "free", $email: "u3@example.com" });
    h.clock.advance(30 * MIN);
    const errors: { message: string; extra?: Record<string, unknown> }[] = [];
    const log: ExportLog = { info: () => {}, warn: () => {}, error: (message, extra) => void errors.push({ message, ...(extra ? { extra } : {}) }) };
    const counted: { name: string; value: number }[] = [];
    const metric = (name: string, value: number) => void counted.push({ name, value });
    for (let n = 0; n < 10; n++) {
      const outcome = (await tick({ log, metric })).syncs[SYNC]?.outcome;
      if (outcome !== "fetching") break;
    }
    await h.drain();

    const removed = receiver.pages.filter((p) => p.payload.action === "remove_members").flatMap((p) => p.payload.parameters.members);
    expect(removed).toEqual([expect.objectContaining({ mixpanel_distinct_id: "u3" })]);
    expect(counted).toContainEqual({ name: "CohortIdentityUnreadable", value: 1 });
    const report = errors.find((e) => e.message.includes("identities unreadable"));
    expect(report?.extra).toMatchObject({ syncId: SYNC, members: 1, reason: "stored identity is not JSON" });
  });

  it("a staged page that is gone is a MissingObjectError, permanent, not retried as transient", async () => {
    await setup();
    // Fetched, emit deferred: less Lambda time left than the emit margin.
    expect((await tick({ remainingMs: () => 10_000 }, { emitMarginMs: 20_000 })).syncs[SYNC]?.outcome).toBe("fetching");
    const run = (await h.store.readState(SYNC)).export;
    if (!run) throw new Error("no run");
    await deleteObject(keys.staged(SYNC, run.run_id, 0));
    const error: unknown = await tick().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(MissingObjectError);
    expect(error).toBeInstanceOf(ValidationError);
    expect(error).not.toBeInstanceOf(RetryableError);
    expect(String((error as Error).message)).toContain(keys.staged(SYNC, run.run_id, 0));
  });
});

describe("cohort emit, two partitions", () => {
  let h: Harness;
  afterEach(async () => {
    await h?.close();
  });

  it("a partition chunk that is gone is the same MissingObjectError as a staged page", async () => {
    h = await startHarness({
      cohorts: [{ id: 7, name: "Power users", where: (p) => p.plan === "pro" }],
      syncs: [{ id: SYNC, cohort_id: 7, schedule: "rate(30 minutes)", destination: { type: "webhook", url: "http://127.0.0.1:9/hook", signing_secret: "s/hook" } }],
    });
    for (let i = 1; i <= 8; i++) h.profiles.set(`u${i}`, { plan: "pro" });
    // One unit per tick: the first tick fetches and spills, the diff waits for the next.
    const oneUnit = limits({ partitionMembers: 4, invocationWorkMs: 0 });
    expect((await h.runExport({}, { limits: oneUnit })).syncs[SYNC]?.outcome).toBe("fetching");
    const run = (await h.store.readState(SYNC)).export;
    expect(run?.partitioned?.step).toBe("diff");
    if (!run) throw new Error("no run");
    const chunk = keys.partChunk(SYNC, run.run_id, 0, 0);
    const { Buckets } = await h.s3.send(new ListBucketsCommand({}));
    await h.s3.send(new DeleteObjectCommand({ Bucket: Buckets?.find((b) => b.Name?.startsWith("snapshots-"))?.Name, Key: chunk }));
    const error: unknown = await h.runExport({}, { limits: oneUnit }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(MissingObjectError);
    expect(String((error as Error).message)).toBe(`${chunk} is missing`);
  });
});
