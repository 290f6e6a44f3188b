import { createHmac } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GetObjectCommand, ListObjectsV2Command } from "@aws-sdk/client-s3";
import { GetQueueAttributesCommand } from "@aws-sdk/client-sqs";
import * as fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LocalStack, startLocalStack } from "../../infra/local/stack.js";
import { captureOutput, type LogCapture } from "../support/log-capture.js";
import { eventually } from "../support/eventually.js";

/**
 * The stage's `pii` rules hold in every copy, for generated input: ruled names (`email` hashed,
 * `phone` dropped) at random depths, in arrays and inside JSON text, under every source's shape
 * (native /v1/events, the SDK route /track, profile operations, groups, Braze custom-event and
 * purchase properties, Adobe `{key, value}` rows with dotted and indexed keys, as rows or as
 * their JSON text), each accepted and rejected. Through the real intake, queues, forwarders and
 * rejected store, no raw value is in the Mixpanel sandbox, the Brevo sandbox, the rejected store
 * or the log; every hashed value's HMAC is in Mixpanel or the rejected store.
 */
const KEY = "local-pii-hash-key-for-tests-0123456789";
const hmac = (text: string) => createHmac("sha256", KEY).update(text).digest("hex");
const PROJECT_TOKEN = "local-project-token";
const SEED = 18_04;
const RUNS = 10;
const nowS = () => Math.floor(Date.now() / 1000);

type RuledName = "email" | "phone";
/** One ruled value's place: a path of filler objects and arrays above the ruled name, optionally as JSON text from some level down. */
interface Placement {
  readonly path: readonly ("array" | "meta" | "ctx")[];
  readonly name: RuledName;
  readonly jsonTextAt: number | undefined;
}

const placementArb: fc.Arbitrary<Placement> = fc.record({
  path: fc.array(fc.constantFrom("array" as const, "meta" as const, "ctx" as const), { maxLength: 4 }),
  name: fc.constantFrom("email" as const, "phone" as const),
  jsonTextAt: fc.option(fc.nat({ max: 4 }), { nil: undefined }),
});
const SOURCES = ["native", "track", "profile", "group", "brazeCustom", "brazePurchase", "adobeRows", "adobeRowsText"] as const;
type Source = (typeof SOURCES)[number];
const caseArb: fc.Arbitrary<Case> = fc.record({
  source: fc.constantFrom(...SOURCES),
  rejected: fc.boolean(),
  placements: fc.array(placementArb, { minLength: 1, maxLength: 3 }),
  operation: fc.constantFrom("$set", "$set_once", "$union", "$append", "$remove"),
});
interface Case {
  readonly source: Source;
  readonly rejected: boolean;
  readonly placements: readonly Placement[];
  readonly operation: "$set" | "$set_once" | "$union" | "$append" | "$remove";
}

/** Every raw value sent, and the ones whose HMAC must appear somewhere (hashed, not dropped). */
const sent: { raw: string; hashed: boolean; source: Source }[] = [];
let sequence = 0;
function secretFor(placement: Placement, item: Case): string {
  const raw = `secret${placement.name}${String(sequence++).padStart(4, "0")}x`;
  // A profile's `$remove` leaves nothing in the sandbox's profile to find the hash in.
  const visible = !(item.source === "profile" && item.operation === "$remove");
  sent.push({ raw, hashed: placement.name === "email" && visible, source: item.source });
  return raw;
}

/** `{filler: … {name: secret}}` with arrays and JSON text where the placement says; its top key is unique per placement. */
function placedEntry(placement: Placement, position: number, secret: string): [string, unknown] {
  let value: unknown = secret;
  let name: string = placement.name;
  const path = [...placement.path];
  for (let level = path.length - 1; level >= 0; level--) {
    value = { [name]: value };
    if (placement.jsonTextAt === level + 1) value = JSON.stringify(value);
    const segment = path[level];
    if (segment === "array") {
      value = [value];
      name = `list${position}_${level}`;
    } else {
      name = `${segment}${position}_${level}`;
    }
  }
  return [path.length === 0 ? placement.name : name, value];
}

function propertiesFor(item: Case): Record<string, unknown> {
  const properties: Record<string, unknown> = {};
  item.placements.forEach((placement, position) => {
    if (placement.path.length === 0 && Object.hasOwn(properties, placement.name)) return;
    const [key, value] = placedEntry(placement, position, secretFor(placement, item));
    properties[key] = value;
  });
  return properties;
}

/** Adobe rows: the ruled name last in a dotted / indexed key (`meta0.ctx1[0].email`). */
function adobeRowsFor(item: Case): { key: string; value: string }[] {
  return item.placements.map((placement, position) => {
    let key = `row${position}`;
    for (const segment of placement.path) key += segment === "array" ? `[${position % 2}]` : `.${segment}`;
    return { key: `${key}.${placement.name}`, value: secretFor(placement, item) };
  });
}

let stack: LocalStack;
let capture: LogCapture;
let dir = "";
const expectedEvents: string[] = [];
const expectedProfiles: string[] = [];
let acceptedCount = 0;

async function send(path: string, body: unknown): Promise<Response> {
  return fetch(`${stack.intakeUrl}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${stack.intakeToken}` },
    body: JSON.stringify(body),
  });
}

async function sendCase(item: Case, run: number): Promise<void> {
  const id = `pii-prop-${run}-${item.source}-${item.rejected ? "r" : "a"}`;
  const insertId = `${id}-insert`;
  const time = nowS();
  let response: Response | undefined;
  switch (item.source) {
    case "native":
      response = await send("/v1/events", [{ event: "Generated", properties: { distinct_id: item.rejected ? "null" : id, time, $insert_id: insertId, ...propertiesFor(item) } }]);
      break;
    case "track": {
      const event = { event: "Tracked", properties: { token: item.rejected ? "not-this-project" : PROJECT_TOKEN, distinct_id: id, time, $insert_id: insertId, ...propertiesFor(item) } };
      const data = Buffer.from(JSON.stringify([event])).toString("base64");
      response = await fetch(`${stack.intakeUrl}/track?verbose=1`, { method: "POST", body: new URLSearchParams({ data }) });
      break;
    }
    case "profile": {
      const properties = propertiesFor(item);
      const values = item.operation === "$union" ? Object.fromEntries(Object.entries(properties).map(([k, v]) => [k, [v]])) : properties;
      response = await send("/v1/profiles", [{ $distinct_id: item.rejected ? "null" : id, [item.operation]: values }]);
      break;
    }
    case "group":
      response = await send("/v1/groups", [{ $group_key: "company_id", ...(item.rejected ? {} : { $group_id: id }), $set: propertiesFor(item) }]);
      break;
    case "brazeCustom":
    case "brazePurchase": {
      const purchase = item.source === "brazePurchase";
      const properties = purchase
        ? { product_id: "sku", price: 1, currency: "USD", purchase_properties: propertiesFor(item) }
        : { ...(item.rejected ? {} : { name: "Generated" }), custom_properties: propertiesFor(item) };
      const user = purchase && item.rejected ? {} : { external_user_id: id };
      const event = { event_type: purchase ? "users.behaviors.Purchase" : "users.behaviors.CustomEvent", id: insertId, time, user, properties };
      response = await send("/v1/braze/currents", { events: [event] });
      break;
    }
    case "adobeRows":
    case "adobeRowsText": {
      const rows = adobeRowsFor(item);
      response = await send("/v1/adobe/events", {
        event: "Adobe Generated",
        properties: { distinct_id: id, time: item.rejected ? "not a time" : time, $insert_id: insertId },
        custom_properties: item.source === "adobeRowsText" ? JSON.stringify(rows) : rows,
      });
      break;
    }
  }
  const answer = (await response?.text()) ?? "";
  expect(response?.status, `${id}: ${answer}`).toBeLessThan(300);
  // What the intake took must reach Mixpanel; some generated items are refused for their shape (e.g. nesting).
  const body = JSON.parse(answer) as { accepted?: number; status?: number };
  const taken = item.source === "track" ? body.status === 1 : body.accepted === 1;
  if (!item.rejected) acceptedCount++;
  if (taken && item.source === "profile") expectedProfiles.push(id);
  else if (taken && item.source !== "group") expectedEvents.push(insertId);
}

async function rejectedStoreText(): Promise<string> {
  const listed = await stack.s3.send(new ListObjectsV2Command({ Bucket: stack.rejectedBucket }));
  const texts = await Promise.all(
    (listed.Contents ?? []).map(async (object) => (await (await stack.s3.send(new GetObjectCommand({ Bucket: stack.rejectedBucket, Key: object.Key }))).Body?.transformToString()) ?? ""),
  );
  return texts.join("\n");
}

async function queueEmpty(url: string): Promise<boolean> {
  const attributes = await stack.sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"] }));
  return attributes.Attributes?.ApproximateNumberOfMessages === "0" && attributes.Attributes.ApproximateNumberOfMessagesNotVisible === "0";
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "relay-pii-property-"));
  const local = JSON.parse(readFileSync("config/local.json", "utf8")) as Record<string, Record<string, unknown>>;
  const configFile = join(dir, "local.json");
  writeFileSync(
    configFile,
    JSON.stringify({
      mixpanel_compat: local.mixpanel_compat,
      brevo: { ...local.brevo, forward_unmapped_events: true },
      pii: { properties: { email: "hash", phone: "drop" } },
    }),
  );
  capture = captureOutput();
  stack = await startLocalStack({
    configFile,
    visibilityTimeoutSeconds: 1,
    brevoRateLimit: 1000,
    env: { PII_HASH_KEY: KEY, POWERTOOLS_LOG_LEVEL: "DEBUG" },
    log: (line) => process.stdout.write(`${line}\n`),
  });
}, 60_000);
afterAll(async () => {
  capture?.stop();
  await stack?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("PII rules in every copy, for generated input", () => {
  it("no ruled value in clear in Mixpanel, Brevo, the rejected store or the log", async () => {
    const runs = fc.sample(fc.array(caseArb, { minLength: SOURCES.length, maxLength: SOURCES.length * 2 }), { seed: SEED, numRuns: RUNS });
    for (const [run, cases] of runs.entries()) {
      // Every source's shape in every run, accepted and rejected, plus the generated ones.
      const all: Case[] = [...cases, ...SOURCES.flatMap((source, i) => (cases[i] ? [{ ...cases[i], source, rejected: run % 2 === 0 }] : []))];
      for (const [position, item] of all.entries()) await sendCase(item, run * 100 + position);
    }
    expect(sent.length).toBeGreaterThan(100);
    // Most items meant to be accepted were: the test is not only about rejections.
    expect(expectedEvents.length + expectedProfiles.length).toBeGreaterThan(acceptedCount / 2);
    expect(new Set(sent.map((entry) => entry.source)).size).toBe(SOURCES.length);

    const mixpanel = stack.sandbox;
    const brevo = stack.brevoSandbox;
    if (!mixpanel || !brevo) throw new Error("the local Mixpanel and Brevo sandboxes are expected");
    const missing = () => expectedEvents.filter((insertId) => !mixpanel.events.some((event) => event.properties.$insert_id === insertId));
    await eventually(() => missing().length === 0, 60_000).catch(async () => {
      throw new Error(`not in Mixpanel: ${missing().join(", ")}\n${(await rejectedStoreText()).slice(0, 3000)}`);
    });
    await eventually(() => expectedProfiles.every((id) => mixpanel.profiles.has(id)), 30_000);
    await eventually(async () => (await queueEmpty(stack.events.url)) && (await queueEmpty(stack.brevo.url)), 60_000);
    expect(brevo.events.length).toBeGreaterThan(0);

    const copies = {
      mixpanel: JSON.stringify({ events: mixpanel.events, profiles: [...mixpanel.profiles], groups: [...mixpanel.groups] }),
      brevo: JSON.stringify({ calls: brevo.calls, events: brevo.events, contacts: [...brevo.contacts] }),
      "rejected store": await rejectedStoreText(),
      log: capture.text(),
    };
    expect(copies.log).toContain("intake"); // the capture saw the stack's log lines
    for (const { raw } of sent) {
      for (const [where, text] of Object.entries(copies)) expect(text.includes(raw), `${raw} in clear in the ${where}`).toBe(false);
    }
    for (const { raw, hashed, source } of sent) {
      if (hashed) expect(copies.mixpanel.includes(hmac(raw)) || copies["rejected store"].includes(hmac(raw)), `the hash of ${raw} (${source}) reached Mixpanel or the rejected store`).toBe(true);
    }
  }, 240_000);

  it("a caller's token / $token (another project's) reaches neither Mixpanel nor Brevo, on events and profile operations", async () => {
    const other = "0ther0project0token0000000000ab";
    const dollar = "d0llar0token0000000000000000cd";
    const time = nowS();
    const events = await send("/v1/events", [{ event: "Purchase", properties: { distinct_id: "token-user", time, $insert_id: "token-event", token: other, $token: dollar, plan: "pro" } }]);
    expect(await events.json()).toMatchObject({ accepted: 1 });
    const profiles = await send("/v1/profiles", [
      { $distinct_id: "token-user", $token: other, $set: { token: other, $token: dollar, plan: "pro" } },
      { $distinct_id: "token-user", $set_once: { $token: dollar, first: "x" } },
    ]);
    expect(await profiles.json()).toMatchObject({ accepted: 2 });
    const mixpanel = stack.sandbox;
    const brevo = stack.brevoSandbox;
    if (!mixpanel || !brevo) throw new Error("the local Mixpanel and Brevo sandboxes are expected");
    await eventually(() => mixpanel.events.some((event) => event.properties.$insert_id === "token-event") && mixpanel.profiles.get("token-user")?.first === "x", 30_000);
    await eventually(() => brevo.events.some((event) => event.event_properties?.insert_id === "token-event"), 30_000);
    expect(mixpanel.profiles.get("token-user")).toMatchObject({ plan: "pro" });
    const copies = JSON.stringify({ events: mixpanel.events, profiles: [...mixpanel.profiles], brevo: brevo.calls });
    expect(copies).not.toContain(other);
    expect(copies).not.toContain(dollar);
  }, 90_000);
});
