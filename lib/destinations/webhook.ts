import * as z from "zod";
import { RetryableError, UpstreamRejectedError } from "../errors.js";
import { fetchText, throwForStatus } from "../http/fetch.js";
import { withRetry } from "../http/retry.js";
import type { DeliveryPage, PageMember } from "../cohorts/messages.js";
import type { CohortSync, WebhookDestination } from "../cohorts/sync-config.js";
import { type SenderDeps, basicAuth, basicAuthSecretSchema, signingSecretSchema, text } from "./http.js";
import { DELIVERY_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, signBody } from "./signature.js";

/**
 * Custom webhook: Mixpanel's exact cohort-sync JSON (reference/cohort-sync.md §1)
 * plus an HMAC signature and optional Basic auth.
 */
export interface WebhookMember {
  email: string;
  mixpanel_distinct_id: string;
  first_name: string;
  last_name: string;
  phone_number: string;
  [extra: string]: unknown;
}

export interface WebhookBody {
  action: DeliveryPage["action"];
  parameters: {
    mixpanel_project_id: string;
    mixpanel_cohort_id: string;
    mixpanel_cohort_name: string;
    mixpanel_cohort_description: string;
    mixpanel_session_id: string;
    page_info: { total_pages: number; page_count: number };
    members: WebhookMember[];
  };
}

const FIXED = new Set(["$email", "$first_name", "$last_name", "$phone"]);

export function webhookMember(member: PageMember, extraProperties: readonly string[]): WebhookMember {
  const out: WebhookMember = {
    email: text(member.props.$email),
    mixpanel_distinct_id: member.id,
    first_name: text(member.props.$first_name),
    last_name: text(member.props.$last_name),
    phone_number: text(member.props.$phone),
  };
  for (const property of extraProperties) {
    if (FIXED.has(property)) continue;
    const value = member.props[property];
    if (value !== undefined) out[property] = value;
  }
  return out;
}

/** Pure builder of the request body. The session id is the relay run id. */
export function buildWebhookBody(page: DeliveryPage, sync: CohortSync): WebhookBody {
  return {
    action: page.action,
    parameters: {
      mixpanel_project_id: page.project_id,
      mixpanel_cohort_id: String(page.cohort.id),
      mixpanel_cohort_name: page.cohort.name,
      mixpanel_cohort_description: page.cohort.description,
      mixpanel_session_id: page.run_id,
      page_info: { total_pages: page.total_pages, page_count: page.page },
      members: page.members.map((m) => webhookMember(m, sync.properties)),
    },
  };
}

/** Mixpanel's receiver reply: `{"action", "status": "success"|"failure", "error": {"message", "code"}}` (optional). */
const replySchema = z.object({
  status: z.enum(["success", "failure"]),
  error: z.object({ message: z.string().optional(), code: z.number().int().optional() }).optional(),
});

export async function sendWebhookPage(
  page: DeliveryPage,
  sync: CohortSync,
  destination: WebhookDestination,
  deps: SenderDeps,
): Promise<void> {
  const { secret } = await deps.secrets.getJson(destination.signing_secret, signingSecretSchema);
  const auth = destination.basic_auth_secret
    ? await deps.secrets.getJson(destination.basic_auth_secret, basicAuthSecretSchema)
    : undefined;
  const body = JSON.stringify(buildWebhookBody(page, sync));
  const what = `webhook ${new URL(destination.url).host}`;
  await withRetry(
    async () => {
      const timestamp = Math.floor(deps.now() / 1000);
      const headers: Record<string, string> = {
        "content-type": "application/json",
        "user-agent": "mixpanel-relay cohort-sync",
        [TIMESTAMP_HEADER]: String(timestamp),
        [SIGNATURE_HEADER]: signBody(secret, timestamp, body),
        [DELIVERY_ID_HEADER]: `${page.run_id}:${page.action}:${page.page}`,
      };
      if (auth) headers.authorization = basicAuth(auth.username, auth.password);
      const result = await fetchText(deps.fetch, destination.url, { method: "POST", headers, body }, deps.timeoutMs);
      throwForStatus(result, what, deps.now());
      let raw: unknown;
      try {
        raw = JSON.parse(result.body);
      } catch {
        return; // 2xx without a JSON reply counts as delivered
      }
      const reply = replySchema.safeParse(raw);
      if (!reply.success || reply.data.status === "success") return;
      const code = reply.data.error?.code ?? 400;
      const message = `${what} answered status "failure" (${code}): ${reply.data.error?.message ?? ""}`;
      if (code === 408 || code === 429 || code >= 500) throw new RetryableError(message, undefined, code);
      throw new UpstreamRejectedError(message, code, result.body);
    },
    deps.retryDeps,
    deps.retryPolicy,
  );
}
