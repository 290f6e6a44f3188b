import { SendMessageBatchCommand } from "@aws-sdk/client-sqs";
import { gzipSync } from "node:zlib";
import { afterEach, describe, expect, it } from "vitest";
import type { ExportDeps } from "../../lib/cohorts/export.js";
import { type CohortStore, keys } from "../../lib/cohorts/store.js";
import { propertyHash } from "../../lib/cohorts/hash.js";
import { identityOf } from "../../lib/cohorts/identity.js";
import { decodeSnapshot } from "../../lib/cohorts/snapshot-codec.js";
import { encodeSnapshotV2 } from "../../lib/cohorts/snapshot-v2.js";
import { lineMember, parseStagedText, stagedObjectText } from "../../lib/cohorts/staged-line-reader.js";
import { identityProperties } from "../../lib/config/cohort-syncs.js";
import { type Harness, startHarness } from "../unit/cohorts/harness.js";
import { WebhookReceiver } from "../../infra/local/peers/webhook-server.js";

/**
 * Large exports emitted partition by partition (lib/cohorts/emit-partitioned.ts),
 * at test scale: `partitionMembers: 20` turns a 60-member cohort into 3
 * hash-range partitions. Real fauxqs S3/SQS, the strict Query API and the strict
 * webhook receiver, as for single-invocation runs.
 */
const SIGNING = "whsec-0123456789abcdef";
const MIN = 60_000;
const SYNC = "hook";

function limits(overrides: Partial<ExportDeps["limits"]> = {}): ExportDeps["limits"] {
  return {
    queriesPerHour: 55,
    queriesPerRun: 20,
    concurrency: 3,
    deliveryTimeoutMs: 86_400_000,
    fetchMarginMs: 1,
    emitMarginMs: 1,
    tickMs: MIN,
    partitionMembers: 20,
    ...overrides,
  };
}

describe("partitioned cohort runs", () => {
  let h: Harness;
  let receiver: WebhookReceiver;

  async function setup(members = 60, properties = ["seats"]) {
    receiver = new WebhookReceiver({ signingSecret: SIGNING, now: () => h.clock.now() });
    const url = await receiver.start();
    h = await startHarness({
      cohorts: [{ id: 7, name: "Power users", where: (p) => p.plan === "pro" }],
      syncs: [
        { id: SYNC, cohort_id: 7, schedule: "rate(30 minutes)", properties, destination: { type: "webhook", url, signing_secret: "s/hook" } },
      ],
      pageSize: 10,
    });
    h.secrets.setSecret("s/hook", { secret: SIGNING });
    for (let i = 1; i <= members; i++) h.profiles.set(`u${i}`, { plan: "pro", seats: 1, $email: `u${i}@example.com` });
  }
  const tick = (overrides: Partial<ExportDeps> = {}, limitOverrides: Partial<ExportDeps["limits"]> = {}) => {
    h.clock.advance(MIN);
    return h.runExport({}, { limits: limits(limitOverrides), ...overrides });
  };
  /** The distinct ids the receiver got in pages of this action, in arrival order. */
  const sent = (action: string) =>
    receiver.pages.filter((p) => p.payload.action === action).flatMap((p) => p.payload.parameters.members.map((m) => String(m.mixpanel_distinct_id)));
  /** Ticks until the run is out (bounded), returning every outcome seen. */
  async function tickUntilEnqueued(overrides: Partial<ExportDeps> = {}, limitOverrides: Partial<ExportDeps["limits"]> = {}) {
    const outcomes: string[] = [];
    for (let n = 0; n < 20; n++) {
      const outcome = (await tick(overrides, limitOverrides)).syncs[SYNC]?.outcome ?? "?";
      outcomes.push(outcome);
      if (outcome === "enqueued" || outcome === "held" || outcome === "advanced") return outcomes;
    }
    throw new Error(`run never enqueued: ${outcomes.join(",")}`);
  }
  const replicaIds = () => [...receiver.members(7).keys()].sort();
  const ids = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, k) => `u${from + k}`).sort();

  afterEach(async () => {
    await receiver?.close();
    await h?.close();
  });

  it("a full run then a diff run: pages numbered across partitions, snapshot stored in partitions, only the changes re-sent", async () => {
    await setup();
    expect(await tickUntilEnqueued()).toEqual(["enqueued"]);
    const delivery = (await h.store.readState(SYNC)).delivery;
    expect(delivery?.partitions).toBe(3);
    expect(delivery?.expected.members).toBe(3); // one page per partition
    expect((await h.drain()).every((o) => o === "delivered")).toBe(true);
    const pageInfo = receiver.pages.map((p) => p.payload.parameters.page_info);
    expect(pageInfo.map((p) => p.page_count).sort()).toEqual([1, 2, 3]);
    expect(pageInfo.every((p) => p.total_pages === 3)).toBe(true);
    expect(replicaIds()).toEqual(ids(1, 60));

    expect((await tick()).syncs[SYNC]?.outcome).toBe("advanced");
    const state = await h.store.readState(SYNC);
    expect(state.snapshot).toMatchObject({ count: 60, partitions: 3 });
    expect(await h.store.list(`cohorts/${SYNC}/snapshot/`)).toHaveLength(3);

    // u5 changes a property, u7 leaves, u61 joins.
    h.profiles.set("u5", { plan: "pro", seats: 9, $email: "u5@example.com" });
    h.profiles.set("u7", { plan: "free", seats: 1, $email: "u7@example.com" });
    h.profiles.set("u61", { plan: "pro", seats: 1, $email: "u61@example.com" });
    receiver.pages.length = 0;
    h.clock.advance(30 * MIN);
    expect(await tickUntilEnqueued()).toEqual(["enqueued"]);
    await h.drain();
    expect(sent("add_members").sort()).toEqual(["u5", "u61"]);
    expect(sent("remove_members")).toEqual(["u7"]);
    expect(replicaIds()).toEqual([...ids(1, 61)].filter((id) => id !== "u7").sort());
    expect(receiver.members(7).get("u5")?.seats).toBe(9);
    expect((await tick()).syncs[SYNC]?.outcome).toBe("advanced");
    expect((await h.store.readState(SYNC)).snapshot?.count).toBe(60);
  });

  it.each([
    ["partitioned (3 partitions: staged and spilled on bytes)", 20],
    ["one object (single-partition diff)", 500_000],
  ])("hostile members through the %s path: emoji, escapes, colliding id hashes and nested values arrive exactly, and a diff re-sends only the changed ones", async (_path, partitionMembers) => {
    await setup(40, ["seats", "note"]);
    // Ids a JSON string escapes, outside the BMP, with the same FNV-1a hash ("costarring"/"liquid"), and ordinary ones.
    const hostile: Record<string, Record<string, unknown>> = {
      "emoji-😀-user": { plan: "pro", seats: 2, note: "café 🎉", $email: "e@example.com" },
      'quote"back\\slash': { plan: "pro", seats: 3, note: { deep: [{ deeper: { n: 1 } }] }, $email: "q@example.com" },
      "tab\tand\nnewline": { plan: "pro", seats: 4, note: "line\nbreak\t\"q\"", $email: "t@example.com" },
      costarring: { plan: "pro", seats: 5, note: 2 ** 53, $email: "c@example.com" },
      liquid: { plan: "pro", seats: 6, note: null, $email: "l@example.com" },
      "\u2028sep": { plan: "pro", seats: 7, note: -0.5, $email: "s@example.com" },
    };
    for (const [id, props] of Object.entries(hostile)) h.profiles.set(id, props);
    expect(await tickUntilEnqueued({}, { partitionMembers })).toEqual(["enqueued"]);
    expect((await h.drain()).every((o) => o === "delivered")).toBe(true);
    const replica = receiver.members(7);
    expect([...replica.keys()].sort()).toEqual([...ids(1, 40), ...Object.keys(hostile)].sort());
    for (const [id, props] of Object.entries(hostile)) expect(replica.get(id)).toMatchObject({ seats: props.seats, note: props.note, email: props.$email });
    expect((await tick({}, { partitionMembers })).syncs[SYNC]?.outcome).toBe("advanced");

    // One colliding id changes, the other leaves, the emoji member stays as it was, a hostile id joins.
    h.profiles.set("costarring", { plan: "pro", seats: 50, note: 2 ** 53, $email: "c@example.com" });
    h.profiles.set("liquid", { plan: "free", seats: 6, note: null, $email: "l@example.com" });
    h.profiles.set("joined-👋", { plan: "pro", seats: 8, $email: "j@example.com" });
    receiver.pages.length = 0;
    h.clock.advance(30 * MIN);
    expect(await tickUntilEnqueued({}, { partitionMembers })).toEqual(["enqueued"]);
    await h.drain();
    expect(sent("add_members").sort()).toEqual(["costarring", "joined-👋"].sort());
    expect(sent("remove_members")).toEqual(["liquid"]);
    expect(receiver.members(7).get("costarring")?.seats).toBe(50);
    expect(receiver.members(7).has("emoji-😀-user")).toBe(true);
  });

  it("spreads the work over invocations (one unit each when time is short) and sends nothing before every partition is diffed", async () => {
    await setup();
    const outcomes = await tickUntilEnqueued({}, { invocationWorkMs: 0 });
    // fetch + spill, 3 diffs (the guard after the last), 3 emits.
    expect(outcomes).toEqual(["fetching", "fetching", "fetching", "fetching", "fetching", "fetching", "enqueued"]);
    await h.drain();
    expect(replicaIds()).toEqual(ids(1, 60));
    expect(receiver.pages).toHaveLength(3);
  });

  it("a run killed mid-partition (diff or emit) resumes where it stopped, without duplicate or missing pages", async () => {
    await setup();
    await tickUntilEnqueued();
    await h.drain();
    await tick();
    receiver.pages.length = 0;
    for (let i = 61; i <= 90; i++) h.profiles.set(`u${i}`, { plan: "pro", seats: 1, $email: `u${i}@example.com` });
    for (let i = 1; i <= 10; i++) h.profiles.set(`u${i}`, { plan: "free", seats: 1, $email: `u${i}@example.com` });
    h.clock.advance(30 * MIN);

    // Killed after partition 1's snapshot is written, before its outbox: the tick fails.
    let killDiff = true;
    const diffKiller: CohortStore = {
      ...h.store,
      putBytes: async (key, body) => {
        if (killDiff && key.endsWith("outbox/0001.json.gz")) {
          killDiff = false;
          throw new Error("Lambda timed out");
        }
        return h.store.putBytes(key, body);
      },
    };
    await expect(tick({ store: diffKiller })).rejects.toThrow(/timed out/);
    expect((await h.store.readState(SYNC)).export?.partitioned?.parts).toHaveLength(1);
    expect(await h.takeMessages()).toEqual([]); // nothing sent before the guard

    // Killed in partition 1's emit: its page objects written, the enqueue fails.
    let enqueues = 0;
    const enqueueKiller = async (messages: unknown[]) => {
      enqueues += 1;
      if (enqueues === 2) throw new Error("Lambda timed out");
      await h.sqs.send(
        new SendMessageBatchCommand({
          QueueUrl: h.queueUrl,
          Entries: messages.map((m, n) => ({ Id: String(n), MessageBody: JSON.stringify(m) })),
        }),
      );
    };
    await expect(tick({ enqueue: enqueueKiller }, { partitionMembers: 20 })).rejects.toThrow(/timed out/);
    const halfway = (await h.store.readState(SYNC)).export;
    expect(halfway?.partitioned?.step).toBe("emit");
    expect(halfway?.emitted_pages).toBeGreaterThan(0);

    expect(await tickUntilEnqueued()).toEqual(["enqueued"]);
    const expected = (await h.store.readState(SYNC)).delivery?.expected;
    await h.drain();
    const received = receiver.pages.map((p) => `${p.payload.action}/${p.payload.parameters.page_info.page_count}`);
    expect(new Set(received).size).toBe(received.length); // no page twice
    expect(received).toHaveLength((expected?.add_members ?? 0) + (expected?.remove_members ?? 0));
    expect(replicaIds()).toEqual(ids(11, 90));
    expect((await tick()).syncs[SYNC]?.outcome).toBe("advanced");
    expect((await h.store.readState(SYNC)).snapshot?.count).toBe(80);
  });

  it("the mass-removal guard counts every partition's removals before any partition emits", async () => {
    await setup();
    await tickUntilEnqueued();
    await h.drain();
    await tick();
    // 36 of 60 leave (> max_remove_fraction 0.5 of the snapshot, judged over all partitions).
    for (let i = 1; i <= 36; i++) h.profiles.set(`u${i}`, { plan: "free", seats: 1, $email: `u${i}@example.com` });
    h.clock.advance(30 * MIN);
    receiver.pages.length = 0;
    expect((await tickUntilEnqueued({}, { invocationWorkMs: 0 })).at(-1)).toBe("held");
    expect(await h.takeMessages()).toEqual([]);
    const held = await h.store.readState(SYNC);
    expect(held.removal_hold).toMatchObject({ removals: 36, previous: 60 });
    expect(held.healthy).toBe(false);
    expect(held.snapshot?.count).toBe(60);
    expect(h.metrics.some((m) => m.name === "CohortSyncHeld")).toBe(true);

    // The next run finds the same: confirmed, sent.
    h.clock.advance(30 * MIN);
    expect((await tickUntilEnqueued()).at(-1)).toBe("enqueued");
    await h.drain();
    expect(replicaIds()).toEqual(ids(37, 60));
  });

  it("moves between layouts: a single snapshot read by a partitioned run, and a partitioned one by a single run", async () => {
    await setup();
    // First run unpartitioned (default partition size).
    await tickUntilEnqueued({}, { partitionMembers: 1_000 });
    await h.drain();
    await tick({}, { partitionMembers: 1_000 });
    expect((await h.store.readState(SYNC)).snapshot?.partitions).toBeUndefined();

    h.profiles.set("u2", { plan: "pro", seats: 5, $email: "u2@example.com" });
    h.clock.advance(30 * MIN);
    receiver.pages.length = 0;
    await tickUntilEnqueued();
    await h.drain();
    const added = () => receiver.pages.filter((p) => p.payload.action === "add_members").flatMap((p) => p.payload.parameters.members.map((m) => m.mixpanel_distinct_id));
    expect(added()).toEqual(["u2"]);
    await tick();
    expect((await h.store.readState(SYNC)).snapshot?.partitions).toBe(3);

    h.profiles.set("u3", { plan: "pro", seats: 5, $email: "u3@example.com" });
    h.clock.advance(30 * MIN);
    receiver.pages.length = 0;
    await tickUntilEnqueued({}, { partitionMembers: 1_000 });
    await h.drain();
    expect(added()).toEqual(["u3"]);
    expect(replicaIds()).toEqual(ids(1, 60));
    await tick({}, { partitionMembers: 1_000 });
    expect((await h.store.readState(SYNC)).snapshot).toMatchObject({ count: 60 });
    expect((await h.store.readState(SYNC)).snapshot?.partitions).toBeUndefined();
    expect(await h.store.exists(keys.snapshot(SYNC))).toBe(true);
  });

  it("a run staged and spilled by the previous release (gzipped {members} pages and chunks) completes after the deploy, re-sending only the changes", async () => {
    await setup();
    await tickUntilEnqueued();
    await h.drain();
    expect((await tick()).syncs[SYNC]?.outcome).toBe("advanced");

    h.profiles.set("u5", { plan: "pro", seats: 9, $email: "u5@example.com" });
    h.profiles.set("u7", { plan: "free", seats: 1, $email: "u7@example.com" });
    h.profiles.set("u61", { plan: "pro", seats: 1, $email: "u61@example.com" });
    h.clock.advance(30 * MIN);
    receiver.pages.length = 0;
    // Fetch only (no time to emit), then rewrite the staged pages as the previous release wrote them.
    for (let n = 0; n < 20 && (await h.store.readState(SYNC)).export?.phase !== "emit"; n++) await tick({}, { emitMarginMs: 1e12 });
    const run = (await h.store.readState(SYNC)).export;
    expect(run?.phase).toBe("emit");
    const runId = run?.run_id ?? "";
    for (let n = 0; n < (run?.staged_pages ?? 0); n++) {
      const { members } = await h.store.getStaged(SYNC, runId, n);
      await h.store.putBytes(keys.staged(SYNC, runId, n), gzipSync(JSON.stringify({ members })));
    }
    // One unit: the spill (reading those v1 pages); then its chunks rewritten as v1 too.
    expect((await tick({}, { invocationWorkMs: 0 })).syncs[SYNC]?.outcome).toBe("fetching");
    const chunks = await h.store.list(`${keys.run(SYNC, runId)}parts/`);
    expect(chunks).toHaveLength(3);
    for (const key of chunks) {
      const rows = parseStagedText(stagedObjectText((await h.store.getBytes(key)) ?? new Uint8Array(), key), key);
      await h.store.putBytes(key, gzipSync(JSON.stringify({ members: rows.lines.map((line, i) => lineMember(rows.ids[i] ?? "", line)) })));
    }
    expect(await tickUntilEnqueued()).toEqual(["enqueued"]);
    await h.drain();
    expect(sent("add_members").sort()).toEqual(["u5", "u61"]);
    expect(sent("remove_members")).toEqual(["u7"]);
    expect(replicaIds()).toEqual([...ids(1, 61)].filter((id) => id !== "u7").sort());
    expect((await tick()).syncs[SYNC]?.outcome).toBe("advanced");
  });

  it("a snapshot of the previous release (v1: id order, SHA-1 hashes, one object) is diffed without re-sending unchanged members", async () => {
    await setup();
    await tickUntilEnqueued({}, { partitionMembers: 1_000 });
    await h.drain();
    await tick({}, { partitionMembers: 1_000 });
    // Rewrite the snapshot as the previous release wrote it, from the run's staged pages.
    const state = await h.store.readState(SYNC);
    const runId = state.snapshot?.run_id ?? "";
    const rows: [string, number, string][] = [];
    for (let n = 0; ; n++) {
      if (!(await h.store.exists(keys.staged(SYNC, runId, n)))) break;
      for (const m of (await h.store.getStaged(SYNC, runId, n)).members) rows.push([m.id, propertyHash(m.props, "sha1-48"), identityOf(m.props, identityProperties(h.syncs[0]!.destination))]);
    }
    expect(rows).toHaveLength(60);
    rows.sort(([a], [b]) => (a < b ? -1 : 1));
    const header = { v: 1, sync_id: SYNC, cohort_id: 7, run_id: runId, created_at: state.snapshot?.created_at, count: 60 };
    await h.store.putBytes(keys.snapshot(SYNC), gzipSync([header, ...rows].map((r) => JSON.stringify(r)).join("\n") + "\n"));

    h.profiles.set("u4", { plan: "pro", seats: 3, $email: "u4@example.com" });
    h.clock.advance(30 * MIN);
    receiver.pages.length = 0;
    await tickUntilEnqueued(); // partitioned (3) over the single v1 object
    await h.drain();
    const added = receiver.pages.filter((p) => p.payload.action === "add_members").flatMap((p) => p.payload.parameters.members.map((m) => m.mixpanel_distinct_id));
    expect(added).toEqual(["u4"]);
    await tick();
    // The diff run kept SHA-1; the next full run moves the snapshot to the fast hash.
    const part0 = await h.store.getBytes(keys.snapshotPart(SYNC, 0, 3));
    expect((await decodeSnapshot(part0 ?? new Uint8Array())).header).toMatchObject({ v: 3, prop_hash: "sha1-48" });
    h.clock.advance(MIN);
    expect((await h.runExport({ force: [SYNC], full: true }, { limits: limits() })).syncs[SYNC]?.outcome).toBe("enqueued");
    await h.drain();
    await tick();
    const full0 = await h.store.getBytes(keys.snapshotPart(SYNC, 0, 3));
    expect((await decodeSnapshot(full0 ?? new Uint8Array())).header).toMatchObject({ v: 3, prop_hash: "fnv-52" });
    expect(replicaIds()).toEqual(ids(1, 60));
  });
  it("a partitioned snapshot written by the release before (v2: gzipped JSON lines) is diffed cleanly after the deploy, then stored as v3", async () => {
    await setup();
    await tickUntilEnqueued();
    await h.drain();
    await tick();
    // Rewrite each partition object as the release before wrote it (v2 lines, identity_keys recorded).
    const state = await h.store.readState(SYNC);
    expect(state.snapshot?.partitions).toBe(3);
    for (let part = 0; part < 3; part++) {
      const key = keys.snapshotPart(SYNC, part, 3);
      const { header, columns } = await decodeSnapshot((await h.store.getBytes(key)) ?? new Uint8Array());
      expect(header.v).toBe(3);
      const rows = Uint32Array.from(columns.ids, (_, i) => i);
      const { ids_bytes: _ids, identities_bytes: _identities, ...fields } = header.v === 3 ? header : { ...header, ids_bytes: 0, identities_bytes: 0 };
      const v2 = await encodeSnapshotV2({ ...fields, v: 2, identity_keys: identityProperties(h.syncs[0]!.destination) }, columns, rows);
      expect(v2[0]).toBe(0x1f); // gzip
      await h.store.putBytes(key, v2);
    }

    h.profiles.set("u9", { plan: "pro", seats: 5, $email: "u9@example.com" });
    h.profiles.delete("u10");
    h.profiles.set("u61", { plan: "pro", seats: 1, $email: "u61@example.com" });
    h.clock.advance(30 * MIN);
    receiver.pages.length = 0;
    await tickUntilEnqueued();
    await h.drain();
    const sent = (action: string) =>
      receiver.pages.filter((p) => p.payload.action === action).flatMap((p) => p.payload.parameters.members.map((m) => m.mixpanel_distinct_id)).sort();
    expect(sent("add_members")).toEqual(["u61", "u9"]);
    expect(sent("remove_members")).toEqual(["u10"]);
    await tick();
    const after = await h.store.readState(SYNC);
    expect(after.snapshot?.count).toBe(60);
    for (let part = 0; part < 3; part++) {
      expect((await decodeSnapshot((await h.store.getBytes(keys.snapshotPart(SYNC, part, 3))) ?? new Uint8Array())).header.v).toBe(3);
    }
    // And the run after that, on v3 only, has nothing to send.
    h.clock.advance(30 * MIN);
    receiver.pages.length = 0;
    await tickUntilEnqueued();
    await h.drain();
    expect(sent("add_members")).toEqual([]);
    expect(sent("remove_members")).toEqual([]);
    expect(replicaIds()).toEqual([...ids(1, 9), ...ids(11, 61)].sort());
  });
});
