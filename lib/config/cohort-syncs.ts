import * as z from "zod";
import { destinationUrlProblem } from "../util/address-policy.js";

/**
 * Cohort sync declarations of the stage config (`cohort_syncs`), issue #4.
 * Secrets are referenced by Secrets Manager *name* only; their values never
 * appear in config or logs. See README "Cohort export and delivery".
 */

/** Secrets Manager names: letters, digits and /_+=.@- (AWS rule). */
const secretName = z
  .string()
  .min(1)
  .max(512)
  .regex(/^[A-Za-z0-9/_+=.@-]+$/, "must be a Secrets Manager secret name (letters, digits, /_+=.@-)");

const RATE = /^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$/;
const UNIT_MS = { minute: 60_000, hour: 3_600_000, day: 86_400_000 } as const;

/** `rate(30 minutes)` → 1 800 000. EventBridge syntax, but only `rate(...)`: the export ticks and decides what is due. */
export function rateToMs(expression: string): number | undefined {
  const match = RATE.exec(expression);
  if (!match) return undefined;
  const value = Number(match[1]);
  const word = match[2] ?? "";
  // EventBridge: "1 hour" but "2 hours".
  if ((value === 1) === word.endsWith("s")) return undefined;
  const unit = word.replace(/s$/, "");
  if (unit !== "minute" && unit !== "hour" && unit !== "day") return undefined;
  return value * UNIT_MS[unit];
}

/** `"schedule": "once"`: one full export, then idle until forced (Mixpanel's one-time export). */
export const ONCE = "once";

const rateExpression = z
  .string()
  .refine((value) => rateToMs(value) !== undefined && (rateToMs(value) ?? 0) > 0, {
    message: 'must be an interval like "rate(30 minutes)", "rate(2 hours)" or "rate(7 days)"',
  });

/**
 * Where the config is deployed, as far as destination addresses go: the local
 * stage (`npm start`, tests) may send plain http to a loopback receiver; every
 * other stage sends https to public addresses only, unless a destination opts
 * in with `allow_private_network: true` (lib/util/address-policy.ts).
 */
export interface DestinationNetworkRules {
  readonly localStage: boolean;
}

export const DEPLOYED_STAGE_RULES: DestinationNetworkRules = { localStage: false };

/** Adds the address-policy problem of `url` (if any) as an issue on that key. */
function checkUrl(
  url: string,
  key: string,
  allowPrivate: boolean,
  rules: DestinationNetworkRules,
  ctx: z.RefinementCtx,
): void {
  const problem = destinationUrlProblem(url, key, { allowPrivate, localStage: rules.localStage });
  if (problem) ctx.addIssue({ code: "custom", path: [key], message: problem });
}

/** Opt-in for an internal endpoint (private, loopback, link-local, CGNAT, unique-local answers allowed). */
const allowPrivateNetwork = z.boolean().default(false);

/** Names a destination inside a fan-out sync (`destinations`); its lane is `<sync id>.<destination id>`. */
const destinationId = z
  .string()
  .regex(/^[a-z0-9][a-z0-9_-]{0,30}$/, "must be lowercase letters, digits, - or _ (used in S3 keys)")
  .optional();

const webhookDestinationSchema = z
  .object({
    type: z.literal("webhook"),
    id: destinationId,
    url: z.string().min(1),
    /** Secret JSON `{"secret": "..."}`: key of the HMAC-SHA256 signature header. */
    signing_secret: secretName,
    /** Optional secret JSON `{"username": "...", "password": "..."}` for Basic auth. */
    basic_auth_secret: secretName.optional(),
    /** Send Mixpanel's empty `add_members`/`remove_members` calls when nothing changed. */
    empty_diff_calls: z.boolean().default(true),
    /** Profile property sent as the member's `email` (Mixpanel: `$email`). */
    email_property: z.string().min(1).default("$email"),
    /** Renames of exported properties as member keys: profile property → key, e.g. {"plan": "tier"}. */
    member_properties: z.record(z.string().min(1), z.string().min(1)).default({}),
    allow_private_network: allowPrivateNetwork,
  })
  .strict();

const brevoDestinationSchema = z
  .object({
    type: z.literal("brevo"),
    id: destinationId,
    list_id: z.number().int().positive(),
    /** Mixpanel profile property → Brevo attribute (UPPERCASE), e.g. {"$first_name": "FIRSTNAME"}. */
    attributes: z
      .record(z.string().min(1), z.string().regex(/^[A-Z0-9_]+$/, "Brevo attribute names are UPPERCASE"))
      .default({ $first_name: "FIRSTNAME", $last_name: "LASTNAME" }),
    /** Secret JSON `{"api_key": "xkeysib-..."}`. */
    api_key_secret: secretName,
    base_url: z.string().min(1).default("https://api.brevo.com/v3"),
    /** Profile property holding the contact's email (default `$email`). */
    email_property: z.string().min(1).default("$email"),
    allow_private_network: allowPrivateNetwork,
  })
  .strict();

const brazeDestinationSchema = z
  .object({
    type: z.literal("braze"),
    id: destinationId,
    /** Instance REST endpoint, e.g. https://rest.iad-01.braze.com */
    rest_endpoint: z.string().min(1),
    /** Array custom attribute the cohort value is added to / removed from. */
    attribute: z.string().min(1).default("mixpanel_cohorts"),
    /** Value put in the array; default the Mixpanel cohort name. */
    value: z.string().min(1).optional(),
    /** Profile property holding the Braze external_id; default the Mixpanel distinct_id. */
    external_id_property: z.string().min(1).optional(),
    /** Sent explicitly on every attribute object (Braze's default is unverified). */
    update_existing_only: z.boolean().default(true),
    /** Secret JSON `{"api_key": "..."}` (REST key with users.track). */
    api_key_secret: secretName,
    /** Profile property → Braze custom attribute, sent with the membership when a member is added. */
    attributes: z.record(z.string().min(1), z.string().min(1)).default({}),
    allow_private_network: allowPrivateNetwork,
  })
  .strict();

/** The endpoint key of each destination type (exhaustive: a new type must name its URL key). */
export function destinationEndpoint(destination: Destination): { key: string; url: string } {
  switch (destination.type) {
    case "webhook":
      return { key: "url", url: destination.url };
    case "brevo":
      return { key: "base_url", url: destination.base_url };
    case "braze":
      return { key: "rest_endpoint", url: destination.rest_endpoint };
    default: {
      const unhandled: never = destination;
      throw new Error(`unhandled destination ${JSON.stringify(unhandled)}`);
    }
  }
}

export function destinationSchemaFor(rules: DestinationNetworkRules) {
  return z
    .discriminatedUnion("type", [webhookDestinationSchema, brevoDestinationSchema, brazeDestinationSchema])
    .superRefine((destination, ctx) => {
      const { key, url } = destinationEndpoint(destination);
      checkUrl(url, key, destination.allow_private_network, rules, ctx);
    });
}

export const destinationSchema = destinationSchemaFor(DEPLOYED_STAGE_RULES);

function cohortSyncSchemaFor(rules: DestinationNetworkRules) {
  return z
    .object({
      id: z
        .string()
        .regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, "must be lowercase letters, digits, - or _ (used in S3 keys)"),
      cohort_id: z.number().int().positive(),
      /** One destination… */
      destination: destinationSchemaFor(rules).optional(),
      /**
       * …or several (each with an `id`): the cohort is queried once per run and every
       * destination keeps its own snapshot, ledger and health (a "lane" per destination).
       */
      destinations: z.array(destinationSchemaFor(rules)).min(1).max(10).optional(),
      /** Extra profile properties exported (webhook: extra member keys; Brevo: needs a mapping). */
      properties: z.array(z.string().min(1)).default([]),
      mode: z.enum(["diff", "full"]).default("diff"),
      schedule: z
        .string()
        .refine((value) => value === ONCE || (rateToMs(value) ?? 0) > 0, {
          message: 'must be "once" or an interval like "rate(30 minutes)", "rate(2 hours)" or "rate(7 days)"',
        })
        .default("rate(30 minutes)"),
      /** Periodic full `members` resync even when a snapshot is fresh; unset = never (only the window below). */
      full_resync_every: rateExpression.optional(),
      /** A snapshot older than this forces a full sync (Mixpanel: 3 days). */
      resync_window: rateExpression.default("rate(3 days)"),
      /** Mixpanel's /engage default (true) also returns ids without a profile (no $email). */
      include_all_users: z.boolean().default(true),
      enabled: z.boolean().default(true),
      /**
       * Mass-removal guard: a run that would remove more than this fraction of the
       * last delivered snapshot is held (sync unhealthy) until a forced full sync or
       * the next run confirms it. 1 disables the guard.
       */
      max_remove_fraction: z.number().min(0).max(1).default(0.5),
    })
    .strict()
    .superRefine((sync, ctx) => {
      if ((sync.destination === undefined) === (sync.destinations === undefined)) {
        ctx.addIssue({ code: "custom", path: ["destination"], message: "give either destination or destinations" });
      }
      const seen = new Set<string>();
      sync.destinations?.forEach((destination, index) => {
        if (destination.id === undefined) {
          ctx.addIssue({ code: "custom", path: ["destinations", index, "id"], message: "every destination of a fan-out sync needs an id" });
        } else if (seen.has(destination.id)) {
          ctx.addIssue({ code: "custom", path: ["destinations", index, "id"], message: `duplicate destination id "${destination.id}"` });
        }
        if (destination.id !== undefined) seen.add(destination.id);
      });
    })
    .transform(({ destination, destinations, ...sync }) => {
      // One lane per destination; `group` is the configured sync id (forcing it forces every lane).
      if (destinations) {
        return destinations.map((lane) => ({ ...sync, id: `${sync.id}.${lane.id ?? ""}`, group: sync.id, destination: lane }));
      }
      return destination ? [{ ...sync, group: sync.id, destination }] : [];
    });
}

export function cohortSyncsSchemaFor(rules: DestinationNetworkRules) {
  return z
    .array(cohortSyncSchemaFor(rules))
    .superRefine((syncs, ctx) => {
      const seen = new Set<string>();
      syncs.forEach((lanes, index) => {
        const group = lanes[0]?.group ?? "";
        if (seen.has(group)) {
          ctx.addIssue({ code: "custom", path: [index, "id"], message: `duplicate sync id "${group}"` });
        }
        seen.add(group);
      });
    })
    .transform((syncs) => syncs.flat());
}

/** The schema for a deployed stage; the local stage uses cohortSyncsSchemaFor({ localStage: true }). */
export const cohortSyncsSchema = cohortSyncsSchemaFor(DEPLOYED_STAGE_RULES);

/** One lane: a sync with one destination (a fan-out sync becomes one lane per destination). */
export type CohortSync = z.output<typeof cohortSyncsSchema>[number];
export type Destination = z.infer<typeof destinationSchema>;
export type WebhookDestination = z.infer<typeof webhookDestinationSchema>;
export type BrevoDestination = z.infer<typeof brevoDestinationSchema>;
export type BrazeDestination = z.infer<typeof brazeDestinationSchema>;

/**
 * Profile properties requested from /engage for one lane (webhook member fields +
 * extras + mapping), united over the lanes it shares its export with (`lanes`):
 * one query serves every destination of a fan-out sync.
 */
export function outputPropertiesFor(sync: CohortSync, lanes: readonly CohortSync[] = [sync]): string[] {
  const wanted = new Set<string>(["$email", "$first_name", "$last_name", "$phone", ...sync.properties]);
  for (const lane of lanes) {
    if (lane.group !== sync.group) continue;
    for (const property of lane.properties) wanted.add(property);
    for (const property of destinationProperties(lane.destination)) wanted.add(property);
  }
  return [...wanted].sort();
}

/** The profile properties a destination's mapping reads (exhaustive on the type). */
export function destinationProperties(destination: Destination): string[] {
  switch (destination.type) {
    case "webhook":
      return [destination.email_property, ...Object.keys(destination.member_properties)];
    case "brevo":
      return [destination.email_property, ...Object.keys(destination.attributes)];
    case "braze":
      return [...(destination.external_id_property ? [destination.external_id_property] : []), ...Object.keys(destination.attributes)];
    default: {
      const unhandled: never = destination;
      throw new Error(`unhandled destination ${JSON.stringify(unhandled)}`);
    }
  }
}

/** What a later removal needs to find the member at the destination (kept in the snapshot). */
export function identityProperties(destination: Destination): string[] {
  switch (destination.type) {
    case "webhook":
    case "brevo":
      return [...new Set(["$email", destination.email_property])];
    case "braze":
      return ["$email", ...(destination.external_id_property ? [destination.external_id_property] : [])];
    default: {
      const unhandled: never = destination;
      throw new Error(`unhandled destination ${JSON.stringify(unhandled)}`);
    }
  }
}

/**
 * A sync scheduled more often than the export tick would silently run at the
 * tick's pace: a config error naming the key (checked at cold start, where the
 * stage's tick is known: COHORT_EXPORT_TICK).
 */
export function scheduleProblems(syncs: readonly CohortSync[], tickMs: number): string[] {
  const problems: string[] = [];
  syncs.forEach((sync, index) => {
    if (sync.schedule === ONCE) return;
    const interval = rateToMs(sync.schedule);
    if (interval !== undefined && interval < tickMs) {
      problems.push(
        `cohort_syncs.${index}.schedule: "${sync.schedule}" is shorter than the stage's export tick (${tickMs / 60_000} min); use at least the tick (serverless.yml params.cohortExportSchedule)`,
      );
    }
  });
  return problems;
}
