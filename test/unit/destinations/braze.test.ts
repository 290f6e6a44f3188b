import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { DeliveryPage, PageMember } from "../../../lib/cohorts/messages.js";
import { type BrazeDestination, cohortSyncsSchemaFor } from "../../../lib/config/cohort-syncs.js";
import { brazeRetryAfterMs, sendBrazePage } from "../../../lib/destinations/braze.js";
import type { SenderDeps } from "../../../lib/destinations/http.js";
import { RetryableError } from "../../../lib/util/errors.js";
import { BrazeServer } from "../../../infra/local/peers/braze-server.js";
import { Clock } from "../cohorts/harness.js";
import { localSecrets, sendersOnTestTime } from "../../support/destination-senders.js";

/** sendBrazePage against the strict local Braze; time is a settable clock, sleeps advance it. */
const secretsEndpoint = localSecrets({ "relay/braze": { api_key: "braze-key" } });
let braze: BrazeServer | undefined;
let clock: Clock;
let sleeps: number[];
let remaining: number;

beforeEach(() => {
  clock = new Clock();
  sleeps = [];
  remaining = 600_000;
});
afterEach(async () => {
  await braze?.close();
  braze = undefined;
});

async function startBraze(options: Partial<ConstructorParameters<typeof BrazeServer>[0]> = {}): Promise<BrazeDestination> {
  braze = new BrazeServer({ apiKey: "braze-key", now: () => clock.now(), ...options });
  const endpoint = await braze.start();
  const [sync] = cohortSyncsSchemaFor({ localStage: true }).parse([
    { id: "z", cohort_id: 1, destination: { type: "braze", rest_endpoint: endpoint, api_key_secret: "relay/braze", update_existing_only: false } },
  ]);
  if (sync?.destination.type !== "braze") throw new Error("config");
  return sync.destination;
}

const deps = (): SenderDeps => sendersOnTestTime(clock, sleeps, () => remaining, secretsEndpoint());

const members = (n: number): PageMember[] => Array.from({ length: n }, (_, k) => ({ id: `u${k}`, props: {} }));
const page = (list: PageMember[]): DeliveryPage => ({
  v: 1,
  sync_id: "z",
  run_id: "run-1",
  project_id: "1",
  cohort: { id: 1, name: "Churn risk", description: "" },
  action: "add_members",
  page: 1,
  total_pages: 1,
  members: list,
});

describe("Braze 429: X-RateLimit-Reset (epoch seconds) is honoured as well as Retry-After", () => {
  it("waits until the window Braze names, then delivers every object", async () => {
    // 2 requests per minute: the third call of a 225-member page meets a 429 whose window resets ~60 s later.
    const destination = await startBraze({ rateLimit: { limit: 2, windowMs: 60_000 } });
    const before = clock.now();
    await sendBrazePage(page(members(225)), destination, deps());
    expect(braze?.calls.map((c) => c.status)).toEqual([201, 201, 429, 201]);
    expect(sleeps).toHaveLength(1);
    const windowEnd = Math.ceil((before - (before % 60_000) + 60_000) / 1000) * 1000;
    expect(before + (sleeps[0] ?? 0)).toBeGreaterThanOrEqual(windowEnd);
    expect(braze?.users.size).toBe(225);
  });

  it("a reset that does not fit in the invocation hands the page back to SQS with the wait, without sleeping", async () => {
    const destination = await startBraze({ rateLimit: { limit: 0, windowMs: 600_000 } });
    remaining = 30_000;
    const error = await sendBrazePage(page(members(1)), destination, deps()).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RetryableError);
    expect((error as RetryableError).retryAfterMs).toBeGreaterThan(30_000);
    expect(sleeps).toEqual([]);
  });

  it("reads the longest of Retry-After, X-RateLimit-Retry-After and X-RateLimit-Reset", () => {
    const now = 1_800_000_000_000;
    const headers = (entries: Record<string, string>) => new Headers(entries);
    expect(brazeRetryAfterMs(headers({ "x-ratelimit-reset": "1800000042" }), now)).toBe(42_000);
    expect(brazeRetryAfterMs(headers({ "retry-after": "5", "x-ratelimit-reset": "1800000002" }), now)).toBe(5_000);
    expect(brazeRetryAfterMs(headers({ "x-ratelimit-retry-after": "9", "x-ratelimit-reset": "1800000002" }), now)).toBe(9_000);
    // A reset already past, or absent: nothing said.
    expect(brazeRetryAfterMs(headers({ "x-ratelimit-reset": "1799999990" }), now)).toBeUndefined();
    expect(brazeRetryAfterMs(headers({}), now)).toBeUndefined();
    expect(brazeRetryAfterMs(headers({ "x-ratelimit-reset": "soon" }), now)).toBeUndefined();
  });
});
