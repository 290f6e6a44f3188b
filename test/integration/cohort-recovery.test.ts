import { afterEach, describe, expect, it } from "vitest";
import type { ExportDeps } from "../../lib/cohorts/export.js";
import type { CohortFixture } from "../../infra/local/peers/mixpanel-query.js";
import { type Harness, startHarness } from "../unit/cohorts/harness.js";
import { WebhookReceiver } from "../../infra/local/peers/webhook-server.js";

/**
 * Failure modes that used to lose or freeze data silently: a page dead-lettered
 * after retryable failures, a cohort deleted mid-export, an empty or truncated
 * export wiping a destination.
 */
const SIGNING = "whsec-0123456789abcdef";
const MIN = 60_000;
const SYNC = "hook";

function limits(overrides: Partial<ExportDeps["limits"]> = {}): ExportDeps["limits"] {
  return { queriesPerHour: 55, queriesPerRun: 20, concurrency: 3, deliveryTimeoutMs: 86_400_000, fetchMarginMs: 1, emitMarginMs: 1, tickMs: MIN, ...overrides };
}

describe("cohort sync recovery", () => {
  let h: Harness;
  let receiver: WebhookReceiver;
  let cohorts: CohortFixture[];

  async function setup(members = 8, pageSize = 1000, extra: Record<string, unknown> = {}) {
    receiver = new WebhookReceiver({ signingSecret: SIGNING, now: () => h.clock.now() });
    const url = await receiver.start();
    cohorts = [{ id: 7, name: "Power users", where: (p) => p.plan === "pro" }];
    h = await startHarness({
      cohorts,
      syncs: [{ id: SYNC, cohort_id: 7, schedule: "rate(30 minutes)", destination: { type: "webhook", url, signing_secret: "s/hook" }, ...extra }],
      pageSize,
    });
    h.secrets.setSecret("s/hook", { secret: SIGNING });
    for (let i = 1; i <= members; i++) h.profiles.set(`u${i}`, { plan: "pro", $email: `u${i}@example.com` });
  }
  /** One tick; the tick is 1 minute in these tests. */
  const tick = (options = {}, overrides: Partial<ExportDeps> = {}) => h.runExport(options, { limits: limits(), ...overrides });

  afterEach(async () => {
    await receiver?.close();
    await h?.close();
  });

  it("a page whose deliveries are exhausted fails the run at once; the next due run re-sends from the last snapshot with a new session", async () => {
    await setup();
    await tick();
    await h.drain();
    h.clock.advance(MIN);
    expect((await tick()).syncs[SYNC]?.outcome).toBe("advanced");
    const startOfOutage = h.clock.now();

    for (let i = 10; i <= 12; i++) h.profiles.set(`u${i}`, { plan: "pro", $email: `u${i}@example.com` });
    h.clock.advance(29 * MIN);
    expect((await tick()).syncs[SYNC]?.outcome).toBe("enqueued");
    const failedRun = (await h.store.readState(SYNC)).delivery?.run_id;
    const messages = await h.takeMessages();
    expect(messages).toHaveLength(2); // add_members + remove_members (empty)

    // The receiver is down: every try answers 503 until the queue's last receive.
    receiver.failNext(...Array.from({ length: 100 }, () => ({ status: 503 })));
    const dead: string[] = [];
    const deps = { maxReceives: 5, deadLetter: async (record: string) => void dead.push(record) };
    for (const body of messages) {
      for (let receive = 1; receive < 5; receive++) await expect(h.deliver(body, deps, receive)).rejects.toThrow(/503/);
      expect(await h.deliver(body, deps, 5)).toBe("dead_lettered");
    }
    expect(dead).toHaveLength(2);
    expect(dead[0]).toContain("deliveries exhausted after 5 receive(s)");

    // The next tick fails the run at once (not after COHORT_DELIVERY_TIMEOUT_HOURS).
    h.clock.advance(MIN);
    const failed = await tick();
    expect(failed.syncs[SYNC]?.outcome).toBe("failed");
    const state = await h.store.readState(SYNC);
    expect(state.healthy).toBe(false);
    expect(state.unhealthy_reason).toMatch(/deliveries exhausted/);
    expect(state.snapshot?.count).toBe(8);
    expect(h.metrics.filter((m) => m.name === "CohortSyncUnhealthy").length).toBeGreaterThan(0);

    // The receiver recovers; the next due run (one interval after the failed run started) re-diffs and delivers.
    const recoveredAt = h.clock.now();
    receiver.clearFaults();
    let deliveredAt: number | undefined;
    for (let minute = 0; minute < 31 && deliveredAt === undefined; minute++) {
      h.clock.advance(MIN);
      await tick();
      await h.drain();
      if (receiver.members(7).has("u12")) deliveredAt = h.clock.now();
    }
    expect(deliveredAt).toBeDefined();
    expect((deliveredAt ?? 0) - recoveredAt).toBeLessThanOrEqual(30 * MIN);
    const resent = receiver.pages.find((p) => p.payload.action === "add_members" && !p.duplicate);
    expect(resent?.payload.parameters.members.map((m) => m.mixpanel_distinct_id).sort()).toEqual(["u10", "u11", "u12"]);
    expect(resent?.payload.parameters.mixpanel_session_id).toMatch(/\.add_members$/);
    expect(resent?.payload.parameters.mixpanel_session_id).not.toBe(`${failedRun ?? ""}.add_members`);
    h.clock.advance(MIN);
    await tick();
    expect((await h.store.readState(SYNC)).healthy).toBe(true);
    console.log(
      `recovery: outage began ${(recoveredAt - startOfOutage) / MIN} min before the receiver recovered; members delivered ${((deliveredAt ?? 0) - recoveredAt) / MIN} min after recovery (schedule 30 min, tick 1 min)`,
    );

    // A page of the failed run redriven from the DLQ later is stale: never sent out of order.
    const pagesBefore = receiver.pages.length;
    const redriven = messages[0] ?? "";
    expect(await h.deliver(redriven, {}, 1)).toBe("stale");
    // …and so is the DLQ record itself (`{message, failure}`) moved back by `npm run redrive`.
    expect(await h.deliver(dead[0] ?? "", {}, 1)).toBe("stale");
    expect(receiver.pages).toHaveLength(pagesBefore);
  });

  it("a cohort deleted mid-export aborts the run, spends no more /engage calls, and resumes when it returns", async () => {
    await setup(8, 3);
    // First tick: list + page 0 only.
    await tick({}, { limits: limits({ queriesPerRun: 2 }) });
    expect((await h.store.readState(SYNC)).export?.next_page).toBe(1);
    const removed = cohorts.splice(0, 1);

    h.clock.advance(MIN);
    const aborted = await tick();
    expect(aborted.syncs[SYNC]?.outcome).toBe("failed");
    const state = await h.store.readState(SYNC);
    expect(state.export).toBeUndefined();
    expect(state.healthy).toBe(false);
    expect(state.unhealthy_reason).toMatch(/refused by the Query API, run aborted/);
    const afterAbort = h.query.queries.length;

    // Two hours of one-minute ticks while the cohort is gone.
    for (let minute = 0; minute < 120; minute++) {
      h.clock.advance(MIN);
      await tick();
    }
    const spentWhileGone = h.query.queries.slice(afterAbort);
    expect(spentWhileGone.every((q) => q.path === "/cohorts/list")).toBe(true);
    expect(spentWhileGone.length).toBe(4); // one list call per schedule interval (30 min), no /engage
    console.log(`deleted cohort: ${afterAbort} Query API calls before the abort (incl. the refused page), then ${spentWhileGone.length} list calls in 2 h, 0 /engage`);
    expect((await h.store.readState(SYNC)).unhealthy_reason).toMatch(/not found in \/cohorts\/list/);

    cohorts.push(...removed);
    for (let minute = 0; minute < 31; minute++) {
      h.clock.advance(MIN);
      await tick();
      await h.drain();
      if (receiver.members(7).size === 8) break;
    }
    expect(receiver.members(7).size).toBe(8);
    h.clock.advance(MIN);
    await tick();
    expect((await h.store.readState(SYNC)).healthy).toBe(true);
  });

  it("an empty export never wipes the destination: held, unhealthy with the counts, until a forced full sync", async () => {
    await setup();
    await tick();
    await h.drain();
    h.clock.advance(MIN);
    await tick();
    for (const props of h.profiles.values()) props.plan = "gone";
    h.clock.advance(30 * MIN);
    const held = await tick();
    expect(held.syncs[SYNC]?.outcome).toBe("held");
    expect(await h.takeMessages()).toEqual([]);
    const state = await h.store.readState(SYNC);
    expect(state.healthy).toBe(false);
    expect(state.unhealthy_reason).toMatch(/would remove 8 of 8 members \(> max_remove_fraction 0.5\)/);
    expect(state.snapshot?.count).toBe(8);
    expect(receiver.members(7).size).toBe(8);

    // The cohort is back before the next run: nothing is removed and the hold is cleared.
    for (const props of h.profiles.values()) props.plan = "pro";
    h.clock.advance(30 * MIN);
    expect((await tick()).syncs[SYNC]?.outcome).toBe("enqueued");
    await h.drain();
    expect(receiver.members(7).size).toBe(8);
    h.clock.advance(MIN);
    await tick();
    expect((await h.store.readState(SYNC)).removal_hold).toBeUndefined();

    // Gone again, then the operator forces a full sync: the guard steps aside.
    for (const props of h.profiles.values()) props.plan = "gone";
    h.clock.advance(30 * MIN);
    expect((await tick()).syncs[SYNC]?.outcome).toBe("held");
    h.clock.advance(MIN);
    expect((await tick({ force: [SYNC], full: true })).syncs[SYNC]?.outcome).toBe("enqueued");
    await h.drain();
    expect(receiver.members(7).size).toBe(0);
  });

  it("a truncated export (fewer members than the announced total) removes nobody", async () => {
    await setup(8, 1000, { max_remove_fraction: 1 });
    await tick();
    await h.drain();
    h.clock.advance(MIN);
    await tick();
    h.clock.advance(30 * MIN);
    await tick({}, { limits: limits({ queriesPerRun: 1 }) }); // the list call only
    h.query.failNext({
      status: 200,
      body: JSON.stringify({
        page: 0,
        page_size: 1000,
        session_id: "s-1",
        status: "ok",
        total: 8,
        results: [{ $distinct_id: "u1", $properties: { $email: "u1@example.com" } }],
      }),
    });
    h.clock.advance(MIN);
    const report = await tick();
    expect(report.syncs[SYNC]?.outcome).toBe("held");
    expect((await h.store.readState(SYNC)).unhealthy_reason).toMatch(/export truncated \(1 of 8 members returned\) and 7 removal/);
    expect(await h.takeMessages()).toEqual([]);
  });

  it("runs on time: rate(30 minutes) under a 15-minute tick runs every 30 minutes, not every 45", async () => {
    await setup();
    const starts: number[] = [];
    const t0 = h.clock.now();
    for (let n = 0; n < 12; n++) {
      // EventBridge fires a little late, and the list call takes time: neither may push the schedule.
      h.clock.advance(n === 0 ? 0 : 15 * MIN + (n % 3) * 1_000);
      const report = await h.runExport({}, {
        limits: limits({ tickMs: 15 * MIN }),
        now: (() => {
          let calls = 0;
          return () => h.clock.now() + 2_000 * calls++; // every read of the clock is later than the last
        })(),
      });
      await h.drain();
      const outcome = report.syncs[SYNC]?.outcome;
      if (outcome === "enqueued" || outcome === "advanced") {
        const state = await h.store.readState(SYNC);
        if (state.last_started_at && !starts.includes(Date.parse(state.last_started_at))) starts.push(Date.parse(state.last_started_at));
      }
    }
    const gaps = starts.slice(1).map((s, i) => Math.round((s - (starts[i] ?? 0)) / MIN));
    expect(starts[0]).toBe(t0);
    expect(gaps.every((g) => g === 30)).toBe(true);
    expect(gaps.length).toBeGreaterThanOrEqual(4);
  });
});
