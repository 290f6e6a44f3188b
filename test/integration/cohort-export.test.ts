import { afterEach, describe, expect, it } from "vitest";
import { keys } from "../../lib/cohorts/store.js";
import { type Harness, startHarness } from "../unit/cohorts/harness.js";
import { WebhookReceiver } from "../../infra/local/peers/webhook-server.js";

const SIGNING = "whsec-0123456789abcdef";
const MIN = 60_000;

function profile(i: number, extra: Record<string, unknown> = {}) {
  return { $email: `user${i}@example.com`, $first_name: `First${i}`, $last_name: `Last${i}`, plan: "pro", ...extra };
}

describe("cohort export → webhook delivery (fauxqs S3/SQS, strict Query API, strict receiver)", () => {
  let h: Harness;
  let receiver: WebhookReceiver;

  async function setup(pageSize = 3, queriesPerHour = 60) {
    receiver = new WebhookReceiver({ signingSecret: SIGNING, basicAuth: { username: "hook", password: "pw" }, now: () => h.clock.now() });
    const url = await receiver.start();
    h = await startHarness({
      cohorts: [{ id: 7, name: "Power users", description: "plan = pro", where: (p) => p.plan === "pro" }],
      syncs: [
        {
          id: "power-hook",
          cohort_id: 7,
          properties: ["plan"],
          destination: { type: "webhook", url, signing_secret: "relay/hook-signing", basic_auth_secret: "relay/hook-basic" },
        },
      ],
      pageSize,
      queriesPerHour,
    });
    h.secrets.setSecret("relay/hook-signing", { secret: SIGNING });
    h.secrets.setSecret("relay/hook-basic", { username: "hook", password: "pw" });
    for (let i = 1; i <= 8; i++) h.profiles.set(`u${i}`, profile(i));
  }

  afterEach(async () => {
    await receiver?.close();
    await h?.close();
  });

  const replicaIds = () => [...receiver.members(7).keys()].sort();

  it("pages across the Query API session, sends `members` first, then adds/removes, and advances only when delivered", async () => {
    await setup();
    const first = await h.runExport();
    expect(first.syncs["power-hook"]?.outcome).toBe("enqueued");
    // 8 members at page_size 3 → 3 /engage calls (0 without session, then session_id + page 1, 2) + 1 list call.
    const engage = h.query.queries.filter((q) => q.path === "/engage");
    expect(engage.map((q) => q.form.page ?? "0")).toEqual(["0", "1", "2"]);
    expect(engage[1]?.form.session_id).toBeTruthy();
    expect(engage[2]?.form.session_id).toBe(engage[1]?.form.session_id);
    expect(JSON.parse(engage[0]?.form.output_properties ?? "[]")).toContain("plan");

    expect((await h.drain()).every((o) => o === "delivered")).toBe(true);
    expect(receiver.pages.map((p) => p.payload.action)).toEqual(["members"]);
    const firstPage = receiver.pages[0]?.payload.parameters;
    expect(firstPage?.page_info).toEqual({ total_pages: 1, page_count: 1 });
    expect(firstPage?.mixpanel_project_id).toBe("4242");
    expect(firstPage?.mixpanel_cohort_name).toBe("Power users");
    expect(firstPage?.members.find((m) => m.mixpanel_distinct_id === "u1")).toEqual({
      email: "user1@example.com",
      mixpanel_distinct_id: "u1",
      first_name: "First1",
      last_name: "Last1",
      phone_number: "",
      plan: "pro",
    });
    expect(replicaIds()).toEqual(["u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8"]);

    // Not due yet: nothing runs, but the ledger is settled and the snapshot advances.
    h.clock.advance(5 * MIN);
    const settle = await h.runExport();
    expect(settle.syncs["power-hook"]?.outcome).toBe("advanced");
    expect((await h.store.readState("power-hook")).snapshot?.count).toBe(8);

    // u2 leaves, u9 joins, u3 changes a property → add u9 + u3, remove u2.
    h.profiles.set("u2", profile(2, { plan: "free" }));
    h.profiles.set("u9", profile(9));
    h.profiles.set("u3", profile(3, { $first_name: "Renamed" }));
    h.clock.advance(30 * MIN);
    const second = await h.runExport();
    expect(second.syncs["power-hook"]?.outcome).toBe("enqueued");
    await h.drain();
    const later = receiver.pages.slice(1).map((p) => ({
      action: p.payload.action,
      ids: p.payload.parameters.members.map((m) => m.mixpanel_distinct_id).sort(),
    }));
    expect(later).toEqual([
      { action: "add_members", ids: ["u3", "u9"] },
      { action: "remove_members", ids: ["u2"] },
    ]);
    expect(receiver.pages[2]?.payload.parameters.members[0]?.email).toBe("user2@example.com");
    expect(receiver.members(7).get("u3")?.first_name).toBe("Renamed");
    expect(replicaIds()).toEqual(["u1", "u3", "u4", "u5", "u6", "u7", "u8", "u9"]);

    // No change: Mixpanel-style empty add_members and remove_members calls.
    h.clock.advance(30 * MIN);
    await h.runExport();
    await h.drain();
    expect(receiver.pages.slice(3).map((p) => [p.payload.action, p.payload.parameters.members.length])).toEqual([
      ["add_members", 0],
      ["remove_members", 0],
    ]);
    expect(receiver.refusals).toEqual([]);
  });

  it("a permanent refusal mid-run keeps the old snapshot, marks the sync unhealthy and re-sends next run", async () => {
    await setup();
    await h.runExport();
    await h.drain();
    h.clock.advance(30 * MIN);
    await h.runExport(); // settles (advance) and starts the next run
    await h.drain();

    for (let i = 10; i <= 12; i++) h.profiles.set(`u${i}`, profile(i));
    h.profiles.delete("u1");
    h.clock.advance(30 * MIN);
    await h.runExport(); // settles the previous run, starts this one
    const snapshotBefore = (await h.store.readState("power-hook")).snapshot;
    expect(snapshotBefore?.count).toBe(8);
    receiver.failNext({ status: 400, body: "member schema rejected" });
    const outcomes = await h.drain();
    expect(outcomes).toContain("UpstreamRejectedError");
    expect(h.metrics.some((m) => m.name === "CohortSyncUnhealthy")).toBe(true);

    h.clock.advance(5 * MIN);
    const settle = await h.runExport();
    expect(settle.syncs["power-hook"]?.outcome).toBe("failed");
    const state = await h.store.readState("power-hook");
    expect(state.healthy).toBe(false);
    expect(state.unhealthy_reason).toMatch(/refused permanently/);
    expect(state.snapshot).toEqual(snapshotBefore);

    // Next run diffs against the old snapshot again: the refused adds are re-sent.
    h.clock.advance(30 * MIN);
    const pagesBefore = receiver.pages.length;
    await h.runExport();
    await h.drain();
    const resent = receiver.pages.slice(pagesBefore).find((p) => p.payload.action === "add_members");
    expect(resent?.payload.parameters.members.map((m) => m.mixpanel_distinct_id).sort()).toEqual(["u10", "u11", "u12"]);
    h.clock.advance(5 * MIN);
    await h.runExport();
    expect((await h.store.readState("power-hook")).healthy).toBe(true);
    expect([...receiver.members(7).keys()].sort()).toEqual(["u10", "u11", "u12", "u2", "u3", "u4", "u5", "u6", "u7", "u8"]);
  });

  it("a redelivered page is delivered once; a transient 503 is retried then delivered", async () => {
    await setup();
    await h.runExport();
    const [body] = await h.takeMessages();
    expect(body).toBeDefined();
    receiver.failNext({ status: 503 });
    expect(await h.deliver(body ?? "")).toBe("delivered");
    expect(h.sleeps.length).toBe(1);
    expect(await h.deliver(body ?? "")).toBe("duplicate");
    expect(receiver.pages.filter((p) => !p.duplicate)).toHaveLength(1);
    expect(receiver.refusals.map((r) => r.status)).toEqual([503]);
  });

  it('a 2xx reply whose JSON status is not "success" is a failure, whatever shape its error has', async () => {
    await setup();
    await h.runExport();
    const [body] = await h.takeMessages();
    const runId = (await h.store.readState("power-hook")).delivery?.run_id ?? "";
    const failure = () => h.store.readFailure(keys.failed("power-hook", runId, "members", 1));

    // error.code as a string: read as 400, permanent.
    receiver.failNext({ status: 200, raw: true, body: JSON.stringify({ status: "failure", error: { code: "400" } }) });
    await expect(h.deliver(body ?? "")).rejects.toThrow(/status "failure" \(400\)/);
    expect((await failure())?.status).toBe(400);
    expect(await h.store.isDelivered("power-hook", runId, "members", 1)).toBe(false);

    // error as a plain string: code 400, the string is the message.
    receiver.failNext({ status: 200, raw: true, body: JSON.stringify({ status: "failure", error: "bad" }) });
    await expect(h.deliver(body ?? "")).rejects.toThrow(/status "failure" \(400\): bad/);

    // Any other status value is a failure too; a string 5xx code is transient (retried, then delivered).
    receiver.failNext({ status: 200, raw: true, body: JSON.stringify({ status: "error" }) });
    await expect(h.deliver(body ?? "")).rejects.toThrow(/status "failure" \(400\)/);
    receiver.failNext({ status: 200, raw: true, body: JSON.stringify({ status: "failure", error: { code: "503", message: "busy" } }) });
    expect(await h.deliver(body ?? "")).toBe("delivered");
    expect(h.sleeps).toHaveLength(1);
    expect(receiver.pages.filter((p) => !p.duplicate)).toHaveLength(1);
  });

  it("a 2xx with a non-JSON body or without a status counts as delivered", async () => {
    await setup();
    await h.runExport();
    await h.drain();
    h.clock.advance(30 * MIN);
    await h.runExport(); // advances, starts the diff run: empty add_members + remove_members
    receiver.failNext({ status: 200, raw: true, body: "OK" }, { status: 202, raw: true, body: JSON.stringify({ received: true }) });
    expect(await h.drain()).toEqual(["delivered", "delivered"]);
  });

  it.each([401, 403])("a %i from the receiver is permanent: failed/ ledger with the body, DLQ, unhealthy at once", async (status) => {
    await setup();
    await h.runExport();
    const [body] = await h.takeMessages();
    receiver.failNext({ status, body: "token revoked" });
    const dead: string[] = [];
    const outcome = await h.deliver(body ?? "", { deadLetter: async (record) => void dead.push(record) });
    expect(outcome).toBe("dead_lettered");
    expect(receiver.refusals.map((r) => r.status)).toEqual([status]); // not retried
    expect(h.sleeps).toEqual([]);
    const runId = (await h.store.readState("power-hook")).delivery?.run_id ?? "";
    const failure = await h.store.readFailure(keys.failed("power-hook", runId, "members", 1));
    expect(failure?.status).toBe(status);
    expect(failure?.body).toContain("token revoked");
    expect(dead[0]).toContain("token revoked");
    expect(h.metrics.some((m) => m.name === "CohortSyncUnhealthy")).toBe(true);
    h.clock.advance(5 * MIN);
    expect((await h.runExport()).syncs["power-hook"]?.outcome).toBe("failed");
    expect((await h.store.readState("power-hook")).healthy).toBe(false);
  });

  it("a 429 from the Query API checkpoints the run and resumes from the same page next hour", async () => {
    await setup(3, 3); // 1 list call + 2 engage pages, then 429
    const first = await h.runExport();
    expect(first.syncs["power-hook"]?.outcome).toBe("fetching");
    const state = await h.store.readState("power-hook");
    expect(state.export?.next_page).toBe(2);
    expect(h.query.queries.filter((q) => q.status === 429).length).toBeGreaterThan(0);
    expect(await h.takeMessages()).toEqual([]);

    h.clock.advance(61 * MIN);
    const second = await h.runExport();
    expect(second.syncs["power-hook"]?.outcome).toBe("enqueued");
    const pagesAsked = h.query.queries.filter((q) => q.path === "/engage" && q.status === 200).map((q) => q.form.page ?? "0");
    expect(pagesAsked).toEqual(["0", "1", "2"]);
    await h.drain();
    expect(replicaIds()).toHaveLength(8);
  });

  it("a tick that throws after fetching still records its Query API calls in _budget.json", async () => {
    await setup(3, 60);
    const start = h.clock.now();
    await expect(
      h.runExport({}, { enqueue: async () => Promise.reject(new Error("SQS is down")) }),
    ).rejects.toThrow("SQS is down");
    const spent = h.query.queries.length;
    expect(spent).toBe(4); // /cohorts/list + 3 /engage pages
    const budget = await h.store.readBudget();
    expect(budget).toHaveLength(spent);
    expect(budget.every((t) => t >= start)).toBe(true);

    // The next tick sees them: with 5 calls allowed per hour, only 1 is left.
    const next = await h.runExport({}, { limits: { queriesPerHour: 5, queriesPerRun: 20, concurrency: 3, deliveryTimeoutMs: 86_400_000, fetchMarginMs: 1, emitMarginMs: 1 } });
    expect(next.queries + next.budgetLeft).toBe(1);
    expect(await h.store.readBudget()).toHaveLength(spent + next.queries);
  });

  it("an expired Query API session restarts the export from page 0", async () => {
    await setup(3, 60);
    await h.runExport({}, { limits: { queriesPerHour: 55, queriesPerRun: 2, concurrency: 1, deliveryTimeoutMs: 86_400_000, fetchMarginMs: 1, emitMarginMs: 1 } });
    expect((await h.store.readState("power-hook")).export?.next_page).toBe(1);
    h.query.expireSessions();
    h.clock.advance(MIN);
    const report = await h.runExport();
    expect(report.syncs["power-hook"]?.outcome).toBe("enqueued");
    await h.drain();
    expect(replicaIds()).toHaveLength(8);
    expect(receiver.pages[0]?.payload.parameters.members).toHaveLength(8);
  });

  it("a snapshot older than the resync window forces a full `members` sync", async () => {
    await setup();
    await h.runExport();
    await h.drain();
    h.clock.advance(5 * MIN);
    await h.runExport();
    h.clock.advance(3 * 86_400_000 + MIN);
    await h.runExport();
    await h.drain();
    expect(receiver.pages.map((p) => p.payload.action)).toEqual(["members", "members"]);
    expect(await h.store.exists(keys.snapshot("power-hook"))).toBe(true);
  });
});

describe("fair scheduling across syncs", () => {
  let h: Harness;
  afterEach(async () => h?.close());

  it("one big cohort does not starve a small one; a run short on Lambda time checkpoints and resumes", async () => {
    const receiver = new WebhookReceiver({ signingSecret: SIGNING, now: () => h.clock.now() });
    const url = await receiver.start();
    h = await startHarness({
      cohorts: [
        { id: 1, name: "Big", where: (p) => p.big === true },
        { id: 2, name: "Small", where: (p) => p.small === true },
      ],
      syncs: [
        { id: "big", cohort_id: 1, destination: { type: "webhook", url, signing_secret: "s/hook" } },
        { id: "small", cohort_id: 2, destination: { type: "webhook", url, signing_secret: "s/hook" } },
      ],
      pageSize: 2,
    });
    h.secrets.setSecret("s/hook", { secret: SIGNING });
    for (let i = 0; i < 20; i++) h.profiles.set(`big${i}`, { big: true, $email: `big${i}@x.com` });
    for (let i = 0; i < 3; i++) h.profiles.set(`small${i}`, { small: true, $email: `small${i}@x.com` });
    const limits = { queriesPerHour: 55, queriesPerRun: 6, concurrency: 2, deliveryTimeoutMs: 86_400_000, fetchMarginMs: 1, emitMarginMs: 1 };
    const first = await h.runExport({}, { limits });
    // 1 list + 5 pages: round-robin gives small its 2 pages while big gets 3 of its 11.
    expect(first.syncs.small?.outcome).toBe("enqueued");
    expect(first.syncs.big?.outcome).toBe("fetching");
    expect((await h.store.readState("big")).export?.next_page).toBe(3);

    // Lambda almost out of time: nothing is fetched, the checkpoint stays where it was.
    h.clock.advance(60_000);
    const short = await h.runExport({}, { limits, remainingMs: () => 0 });
    expect(short.queries).toBe(0);
    expect((await h.store.readState("big")).export?.next_page).toBe(3);

    for (let tick = 0; tick < 3; tick++) {
      h.clock.advance(60_000);
      await h.runExport({}, { limits });
    }
    expect((await h.store.readState("big")).delivery?.expected.members).toBe(1);
    await h.drain();
    expect([...receiver.members(1).keys()]).toHaveLength(20);
    expect([...receiver.members(2).keys()]).toHaveLength(3);
    await receiver.close();
  });
});
