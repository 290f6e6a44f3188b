import { RetryableError } from "../errors.js";
import { type HttpResult, fetchText } from "../http/fetch.js";
import { withRetry } from "../http/retry.js";
import type { DeliveryPage, PageMember } from "../cohorts/messages.js";
import type { BrevoDestination } from "../cohorts/sync-config.js";
import { type SenderDeps, apiKeySecretSchema, chunkOf, text, throwForDestinationStatus } from "./http.js";

/**
 * Brevo lists (reference/cohort-sync.md §3): upsert each contact with
 * `POST /contacts` + `updateEnabled: true`, then add/remove list membership via
 * `/contacts/lists/{id}/contacts/{add|remove}` in chunks of 150 emails. Never
 * `/contacts/batch` (deprecated 2026-10-30). Members without an email are skipped.
 * Rate limits: `x-sib-ratelimit-remaining` 0 → wait `x-sib-ratelimit-reset`
 * seconds before the next call; 429 → back off by the same header.
 */
export const BREVO_LIST_CHUNK = 150;

export interface RateGate {
  /** Epoch ms before which no call may be made. */
  blockedUntil: number;
}

export function brevoAttributes(member: PageMember, mapping: Record<string, string>): Record<string, unknown> {
  const attributes: Record<string, unknown> = {};
  for (const [property, attribute] of Object.entries(mapping)) {
    const value = member.props[property];
    if (value !== undefined && value !== null && value !== "") attributes[attribute] = value;
  }
  return attributes;
}

export function memberEmail(member: PageMember): string | undefined {
  const email = text(member.props.$email).trim();
  return email.includes("@") ? email : undefined;
}

/** Brevo's answer to an idempotent repeat ("already in list", "already removed", "does not exist"). */
function isHarmlessListRefusal(result: HttpResult): boolean {
  return result.status === 400 && /already (in|removed)|does not exist/i.test(result.body);
}

function readGate(result: HttpResult, gate: RateGate, now: number): number | undefined {
  const remaining = result.headers.get("x-sib-ratelimit-remaining");
  const reset = result.headers.get("x-sib-ratelimit-reset");
  const resetMs = reset !== null && /^\d+(\.\d+)?$/.test(reset.trim()) ? Math.round(Number(reset) * 1000) : undefined;
  if (result.status === 429 || (remaining !== null && Number(remaining) <= 0)) {
    gate.blockedUntil = Math.max(gate.blockedUntil, now + (resetMs ?? 1000));
  }
  return resetMs;
}

export async function sendBrevoPage(page: DeliveryPage, destination: BrevoDestination, deps: SenderDeps, gate: RateGate = { blockedUntil: 0 }): Promise<void> {
  const { api_key: apiKey } = await deps.secrets.getJson(destination.api_key_secret, apiKeySecretSchema);
  const base = destination.base_url.replace(/\/+$/, "");

  async function call(path: string, payload: unknown, what: string, harmless?: (r: HttpResult) => boolean): Promise<void> {
    await withRetry(
      async () => {
        const wait = gate.blockedUntil - deps.now();
        if (wait > 0) await deps.retryDeps.sleep(wait);
        const result = await fetchText(
          deps.fetch,
          `${base}${path}`,
          {
            method: "POST",
            headers: { "api-key": apiKey, "content-type": "application/json", accept: "application/json" },
            body: JSON.stringify(payload),
          },
          deps.timeoutMs,
        );
        const resetMs = readGate(result, gate, deps.now());
        if (result.status === 429) throw new RetryableError(`Brevo ${what} rate limited (429)`, resetMs ?? 1000, 429);
        if (harmless?.(result)) return;
        throwForDestinationStatus(result, `Brevo ${what}`, deps.now());
      },
      deps.retryDeps,
      deps.retryPolicy,
    );
  }

  const members: { email: string; member: PageMember }[] = [];
  const seen = new Set<string>();
  for (const member of page.members) {
    const email = memberEmail(member);
    if (!email) continue;
    const key = email.toLowerCase();
    if (seen.has(key)) continue;
    seen.add(key);
    members.push({ email, member });
  }
  const skipped = page.members.length - members.length;
  if (skipped > 0) deps.warn("brevo: members without email skipped", { skipped, action: page.action, page: page.page });

  const listPath = `/contacts/lists/${destination.list_id}/contacts`;
  if (page.action === "remove_members") {
    for (const emails of chunkOf(members.map((m) => m.email), BREVO_LIST_CHUNK)) {
      await call(`${listPath}/remove`, { emails }, "list remove", isHarmlessListRefusal);
    }
    return;
  }
  for (const { email, member } of members) {
    await call(
      "/contacts",
      { email, attributes: brevoAttributes(member, destination.attributes), updateEnabled: true },
      "contact upsert",
    );
  }
  for (const emails of chunkOf(members.map((m) => m.email), BREVO_LIST_CHUNK)) {
    await call(`${listPath}/add`, { emails }, "list add", isHarmlessListRefusal);
  }
}
