import * as z from "../util/zod.js";
import { RetryableError } from "../util/errors.js";
import { parseRetryAfterMs } from "../http/retry.js";
import type { HttpResult } from "../http/fetch.js";
import type { DeliveryPage, PageMember } from "../cohorts/messages.js";
import type { BrazeDestination } from "../config/cohort-syncs.js";
import { type SenderDeps, apiKeySecretSchema, chunkOf, text } from "./http.js";
import { sendToDestination } from "./send.js";
import { parseJsonWith } from "../util/json.js";

/**
 * Braze (docs/vendors/cohort-sync.md §4): `POST {rest_endpoint}/users/track` with
 * 75 attribute objects per call, each `{external_id, <attribute>: {add|remove: [value]},
 * _update_existing_only}`; `_update_existing_only` is always sent explicitly.
 */
export const BRAZE_ATTRIBUTES_PER_CALL = 75;

export interface BrazeAttributeObject {
  external_id: string;
  _update_existing_only: boolean;
  [attribute: string]: unknown;
}

export function brazeExternalId(member: PageMember, destination: BrazeDestination): string | undefined {
  if (!destination.external_id_property) return member.id;
  const value = text(member.props[destination.external_id_property]);
  return value === "" ? undefined : value;
}

/** Pure builder: the attribute objects of one page. */
export function brazeAttributeObjects(page: DeliveryPage, destination: BrazeDestination): BrazeAttributeObject[] {
  const value = destination.value ?? page.cohort.name;
  const op = page.action === "remove_members" ? "remove" : "add";
  const out: BrazeAttributeObject[] = [];
  const seen = new Set<string>();
  for (const member of page.members) {
    const externalId = brazeExternalId(member, destination);
    if (externalId === undefined || seen.has(externalId)) continue;
    seen.add(externalId);
    const mapped: Record<string, unknown> = {};
    if (op === "add") {
      // Mapped profile attributes ride along with the membership (never on a removal: the profile may be gone).
      for (const [property, attribute] of Object.entries(destination.attributes)) {
        const propertyValue = member.props[property];
        if (propertyValue !== undefined && propertyValue !== null) mapped[attribute] = propertyValue;
      }
    }
    out.push({
      external_id: externalId,
      ...mapped,
      [destination.attribute]: { [op]: [value] },
      _update_existing_only: destination.update_existing_only,
    });
  }
  return out;
}

/**
 * How long a Braze 429 asks the sender to wait. Braze documents `X-RateLimit-Reset` as the UTC
 * epoch time (seconds) when the rate-limit window resets and `X-RateLimit-Retry-After` as
 * seconds to wait (https://www.braze.com/docs/api/api_limits); a plain `Retry-After` is read
 * too. The longest stated wait wins; undefined when none says anything usable.
 */
export function brazeRetryAfterMs(headers: Headers, nowMs: number): number | undefined {
  const waits: number[] = [];
  const retryAfter = parseRetryAfterMs(headers.get("retry-after"), nowMs);
  if (retryAfter !== undefined) waits.push(retryAfter);
  const brazeRetryAfter = headers.get("x-ratelimit-retry-after")?.trim() ?? "";
  if (/^\d+(\.\d+)?$/.test(brazeRetryAfter)) waits.push(Math.round(Number(brazeRetryAfter) * 1000));
  const reset = headers.get("x-ratelimit-reset")?.trim() ?? "";
  if (/^\d+(\.\d+)?$/.test(reset)) {
    const untilReset = Math.ceil(Number(reset) * 1000 - nowMs);
    if (untilReset > 0) waits.push(untilReset);
  }
  return waits.length > 0 ? Math.max(...waits) : undefined;
}

/** A 429 becomes a RetryableError carrying Braze's own wait, so the shared retry policy honours it. */
function throwForBrazeRateLimit(result: HttpResult, nowMs: number): undefined {
  if (result.status !== 429) return undefined;
  throw new RetryableError(
    `Braze /users/track answered 429: ${result.body.slice(0, 500)}`,
    brazeRetryAfterMs(result.headers, nowMs),
    429,
  );
}

const brazeReplySchema = z.object({
  message: z.optional(z.string()),
  errors: z.optional(z.array(z.unknown())),
});

export async function sendBrazePage(page: DeliveryPage, destination: BrazeDestination, deps: SenderDeps): Promise<void> {
  const { api_key: apiKey } = await deps.secrets.getJson(destination.api_key_secret, apiKeySecretSchema);
  const objects = brazeAttributeObjects(page, destination);
  const skipped = page.members.length - objects.length;
  if (skipped > 0) deps.warn("braze: members without external id skipped", { skipped, page: page.page });
  for (const attributes of chunkOf(objects, BRAZE_ATTRIBUTES_PER_CALL)) {
    await postBrazeAttributes(destination, apiKey, attributes, deps, (result) => {
      // A 2xx without JSON is delivered: it fails the schema and warns of nothing.
      const reply = parseJsonWith(brazeReplySchema, result.body);
      if (reply.success && reply.data.errors && reply.data.errors.length > 0) {
        // Partial success: Braze applied the rest; per-object errors are logged, not retried.
        deps.warn("braze: /users/track reported object errors", { errors: reply.data.errors.slice(0, 5) });
      }
    });
  }
}

/** Where Braze attributes go: what cohort and query Braze destinations share. */
export interface BrazeTarget {
  readonly rest_endpoint: string;
  readonly allow_private_network: boolean;
}

/**
 * One `POST {rest_endpoint}/users/track` of at most BRAZE_ATTRIBUTES_PER_CALL attribute objects;
 * a 429 retries after Braze's own wait (brazeRetryAfterMs). `onSuccess` reads a 2xx answer.
 */
export async function postBrazeAttributes(
  destination: BrazeTarget,
  apiKey: string,
  attributes: readonly unknown[],
  deps: SenderDeps,
  onSuccess?: (result: HttpResult) => void,
): Promise<void> {
  await sendToDestination(
    {
      what: "Braze /users/track",
      url: `${destination.rest_endpoint.replace(/\/+$/, "")}/users/track`,
      allowPrivate: destination.allow_private_network,
      body: JSON.stringify({ attributes }),
      headers: () => ({ authorization: `Bearer ${apiKey}`, "content-type": "application/json" }),
      inspect: (result) => throwForBrazeRateLimit(result, deps.now()),
      ...(onSuccess ? { onSuccess } : {}),
    },
    deps,
  );
}
