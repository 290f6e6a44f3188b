import * as z from "../util/zod.js";
import { RetryableError, UpstreamRejectedError } from "../util/errors.js";
import type { DeliveryPage, PageMember } from "../cohorts/messages.js";
import type { CohortSync, WebhookDestination } from "../config/cohort-syncs.js";
import { type SenderDeps, basicAuth, basicAuthSecretSchema, signingSecretSchema, text } from "./http.js";
import { sendToDestination } from "./send.js";
import { DELIVERY_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, signBody } from "./signature.js";
import { parseJsonWith } from "../util/json.js";

/**
 * Custom webhook: Mixpanel's exact cohort-sync JSON (docs/vendors/cohort-sync.md §1)
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

export interface MemberMapping {
  /** Profile property sent as `email` (default `$email`). */
  readonly emailProperty?: string;
  /** Profile property → member key. */
  readonly renames?: Readonly<Record<string, string>>;
}

export function webhookMember(member: PageMember, extraProperties: readonly string[], mapping: MemberMapping = {}): WebhookMember {
  const renames = mapping.renames ?? {};
  const out: WebhookMember = {
    email: text(member.props[mapping.emailProperty ?? "$email"]),
    mixpanel_distinct_id: member.id,
    first_name: text(member.props.$first_name),
    last_name: text(member.props.$last_name),
    phone_number: text(member.props.$phone),
  };
  const reserved = new Set(["email", "mixpanel_distinct_id", "first_name", "last_name", "phone_number"]);
  for (const property of new Set([...extraProperties, ...Object.keys(renames)])) {
    const key = renames[property] ?? property;
    if ((FIXED.has(property) && renames[property] === undefined) || reserved.has(key)) continue;
    const value = member.props[property];
    if (value !== undefined) out[key] = value;
  }
  return out;
}

function destinationMapping(sync: CohortSync): MemberMapping {
  const destination = sync.destination;
  return destination.type === "webhook"
    ? { emailProperty: destination.email_property, renames: destination.member_properties }
    : {};
}

/**
 * One session per action of a run: Mixpanel defines `page_info.total_pages` as the number of
 * messages for the given `mixpanel_session_id` (https://docs.mixpanel.com/docs/cohort-sync/webhooks),
 * and each action's pages are counted on their own, so each action gets its own session.
 * The run id leads, so an operator can trace a session back to its run.
 */
export function webhookSessionId(page: Pick<DeliveryPage, "run_id" | "action">): string {
  return `${page.run_id}.${page.action}`;
}

/** Pure builder of the request body. */
export function buildWebhookBody(page: DeliveryPage, sync: CohortSync): WebhookBody {
  return {
    action: page.action,
    parameters: {
      mixpanel_project_id: page.project_id,
      mixpanel_cohort_id: String(page.cohort.id),
      mixpanel_cohort_name: page.cohort.name,
      mixpanel_cohort_description: page.cohort.description,
      mixpanel_session_id: webhookSessionId(page),
      page_info: { total_pages: page.total_pages, page_count: page.page },
      members: page.members.map((m) =>
        webhookMember(m, sync.properties, destinationMapping(sync)),
      ),
    },
  };
}

/**
 * Mixpanel's receiver reply: `{"action", "status": "success"|"failure", "error": {"message", "code"}}`.
 * Read leniently: a 2xx whose body is not JSON or has no `status` is a success
 * (Mixpanel's contract is 2xx + success); **any** `status` other than "success"
 * is a failure, whatever the rest looks like. `error.code` may be a number or a
 * numeric string (400 when absent or not a 4xx/5xx code); `error` may be a plain string.
 */
const replySchema = z.looseObject({ status: z.optional(z.unknown()), error: z.optional(z.unknown()) });
const replyCodeSchema = z.catch(z.coerce.number().check(z.int(), z.gte(400), z.lte(599)), 400);
const replyErrorSchema = z.looseObject({ message: z.optional(z.unknown()), code: z.optional(z.unknown()) });

/** undefined = delivered; otherwise the failure the receiver reported. */
export function readWebhookReply(body: string): { code: number; message: string } | undefined {
  // A 2xx without a JSON reply (or with one of another shape) counts as delivered.
  const reply = parseJsonWith(replySchema, body);
  if (!reply.success || reply.data.status === undefined || reply.data.status === "success") return undefined;
  const error = reply.data.error;
  if (typeof error === "string") return { code: 400, message: error };
  const detail = replyErrorSchema.safeParse(error);
  if (!detail.success) return { code: 400, message: "" };
  const message = detail.data.message;
  return {
    code: replyCodeSchema.parse(detail.data.code),
    message: message === undefined ? "" : text(message),
  };
}

export async function sendWebhookPage(
  page: DeliveryPage,
  sync: CohortSync,
  destination: WebhookDestination,
  deps: SenderDeps,
): Promise<void> {
  await sendSignedWebhook(
    destination,
    {
      body: JSON.stringify(buildWebhookBody(page, sync)),
      deliveryId: `${page.run_id}:${page.action}:${page.page}`,
      userAgent: "mixpanel-relay cohort-sync",
    },
    deps,
  );
}

/** Where a signed webhook goes and with which secrets: what cohort and query webhook destinations share. */
export interface SignedWebhookTarget {
  readonly url: string;
  /** Secret JSON `{"secret": "..."}`: key of the HMAC-SHA256 signature header. */
  readonly signing_secret: string;
  /** Optional secret JSON `{"username": "...", "password": "..."}` for Basic auth. */
  readonly basic_auth_secret?: string | undefined;
  readonly allow_private_network: boolean;
}

export interface SignedWebhookRequest {
  readonly body: string;
  /** Stays the same when the same page is sent again, so the receiver can drop a repeat. */
  readonly deliveryId: string;
  readonly userAgent: string;
}

/**
 * POSTs one JSON body signed with the destination's secret (signature.ts), with Basic auth when
 * the destination has it, and reads the receiver's reply as Mixpanel's webhook contract has it
 * (readWebhookReply): a `"failure"` with 408, 429 or a 5xx code is retried (RetryableError), any
 * other failure is refused for good (UpstreamRejectedError).
 */
export async function sendSignedWebhook(destination: SignedWebhookTarget, request: SignedWebhookRequest, deps: SenderDeps): Promise<void> {
  const { secret } = await deps.secrets.getJson(destination.signing_secret, signingSecretSchema);
  const auth = destination.basic_auth_secret
    ? await deps.secrets.getJson(destination.basic_auth_secret, basicAuthSecretSchema)
    : undefined;
  const { body, deliveryId, userAgent } = request;
  const what = `webhook ${new URL(destination.url).host}`;
  await sendToDestination(
    {
      what,
      url: destination.url,
      allowPrivate: destination.allow_private_network,
      body,
      headers: () => {
        const timestamp = Math.floor(deps.now() / 1000);
        const headers: Record<string, string> = {
          "content-type": "application/json",
          "user-agent": userAgent,
          [TIMESTAMP_HEADER]: String(timestamp),
          [SIGNATURE_HEADER]: signBody(secret, timestamp, body),
          [DELIVERY_ID_HEADER]: deliveryId,
        };
        if (auth) headers.authorization = basicAuth(auth.username, auth.password);
        return headers;
      },
      onSuccess: (result) => {
        const failure = readWebhookReply(result.body);
        if (!failure) return;
        const { code } = failure;
        const message = `${what} answered status "failure" (${code}): ${failure.message}`;
        if (code === 408 || code === 429 || code >= 500) throw new RetryableError(message, undefined, code);
        throw new UpstreamRejectedError(message, code, result.body);
      },
    },
    deps,
  );
}
