/**
 * Benchmark inputs, deterministic: native events of ~600 bytes once mapped (the size the
 * issue measured with), Braze Currents batches built from the examples' event families,
 * and Adobe event-forwarding calls.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";

export function nativeEvents(count: number, nowS: number): unknown[] {
  return Array.from({ length: count }, (_, i) => ({
    event: `Bench Event ${i % 20}`,
    properties: {
      distinct_id: `user-${(i * 7919) % 50_000}`,
      time: nowS - (i % 3600),
      plan: i % 2 === 0 ? "pro" : "free",
      page: `/pages/${i % 300}/section/${i % 17}`,
      referrer: `https://www.example.com/campaigns/${i % 40}?utm=${i % 7}`,
      amount: Math.round(i * 1.37 * 100) / 100,
      tags: ["alpha", "beta", `tag-${i % 11}`],
      utm_source: "newsletter",
      utm_medium: "email",
      utm_campaign: "winter-2026",
      $browser: "Firefox",
      $browser_version: 133,
      $os: "Linux",
      $screen_width: 1920,
      $screen_height: 1080,
      $current_url: `https://app.example.com/workspace/${i % 900}/items/${i}`,
      session_id: `s-${Math.floor(i / 25)}`,
      experiment: { name: "checkout-v3", variant: i % 3 === 0 ? "control" : "treatment" },
      cart_items: i % 9,
    },
  }));
}

interface BrazeBatch {
  events: Record<string, unknown>[];
}

export function brazeBatch(size: number, seed: number, root: string): BrazeBatch {
  const sample = JSON.parse(readFileSync(join(root, "examples/braze-currents-batch.json"), "utf8")) as BrazeBatch;
  const families = sample.events;
  return {
    events: Array.from({ length: size }, (_, i) => {
      const base = families[i % families.length] ?? {};
      const user = (base.user ?? {}) as Record<string, unknown>;
      return { ...base, id: `bench-${seed}-${i}`, user: { ...user, external_user_id: `user-${(seed * 100 + i) % 50_000}` } };
    }),
  };
}

export function adobeBatch(size: number, nowS: number, seed: number): unknown[] {
  return Array.from({ length: size }, (_, i) => ({
    event: `Adobe Event ${i % 10}`,
    properties: { time: String(nowS - i), distinct_id: `ecid-${seed}-${i % 5000}`, $insert_id: `adobe-${seed}-${i}` },
    custom_properties: { order_id: `o-${i}`, revenue: i * 1.5, currency: "EUR", page_name: `page ${i % 50}` },
  }));
}

/** The event shape of the bench the issue measured with (~300 bytes once mapped), for comparison. */
export function smallNativeEvents(count: number, nowS: number): unknown[] {
  return Array.from({ length: count }, (_, i) => ({
    event: `Bench Event ${i % 20}`,
    properties: {
      distinct_id: `user-${i % 5000}`,
      time: nowS - (i % 3600),
      plan: i % 2 === 0 ? "pro" : "free",
      page: `/pages/${i % 300}`,
      amount: i * 1.5,
      tags: ["a", "b", "c"],
      utm_source: "newsletter",
      utm_campaign: "winter-2026",
      $browser: "Firefox",
      $os: "Linux",
    },
  }));
}

/** An intake request as the HTTP adapter hands it to handleIntake, with the bench's bearer token. */
export function intakeRequest(token: string, path: string, body: unknown, headers: Record<string, string> = {}) {
  return {
    method: "POST",
    path,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json", ...headers },
    query: {},
    body: Buffer.from(JSON.stringify(body)),
  };
}
