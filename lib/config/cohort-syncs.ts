import * as z from "../util/zod.js";
import { destinationUrlProblem } from "../util/address-policy.js";

/**
 * Cohort sync declarations of the stage config (`cohort_syncs`).
 * Secrets are referenced by Secrets Manager *name* only; their values never
 * appear in config or logs. See docs/cohorts.md.
 */

/** Secrets Manager names: letters, digits and /_+=.@- (AWS rule). */
const secretName = z
  .string()
  .check(z.minLength(1), z.maxLength(512), z.regex(/^[A-Za-z0-9/_+=.@-]+$/, "must be a Secrets Manager secret name (letters, digits, /_+=.@-)"));

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

const rateExpression = z.string().check(
  z.refine((value) => rateToMs(value) !== undefined && (rateToMs(value) ?? 0) > 0, {
    message: 'must be an interval like "rate(30 minutes)", "rate(2 hours)" or "rate(7 days)"',
  }),
);

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
  ctx: z.core.$RefinementCtx,
): void {
  const problem = destinationUrlProblem(url, key, { allowPrivate, localStage: rules.localStage });
  if (problem) ctx.addIssue({ code: "custom", path: [key], message: problem });
}

/** Opt-in for an internal endpoint (private, loopback, link-local, CGNAT, unique-local answers allowed). */
const allowPrivateNetwork = z._default(z.boolean(), false);

const nonEmpty = z.string().check(z.minLength(1));
/** A profile property → name table (member keys, destination attributes). */
const nameTable = z.record(nonEmpty, nonEmpty);

/** Names a destination inside a fan-out sync (`destinations`); its lane is `<sync id>.<destination id>`. */
const destinationId = z.optional(
  z.string().check(z.regex(/^[a-z0-9][a-z0-9_-]{0,30}$/, "must be lowercase letters, digits, - or _ (used in S3 keys)")),
);

const webhookDestinationSchema = z.strictObject({
  type: z.literal("webhook"),
  id: destinationId,
  url: nonEmpty,
  /** Secret JSON `{"secret": "..."}`: key of the HMAC-SHA256 signature header. */
  signing_secret: secretName,
  /** Optional secret JSON `{"username": "...", "password": "..."}` for Basic auth. */
  basic_auth_secret: z.optional(secretName),
  /** Send Mixpanel's empty `add_members`/`remove_members` calls when nothing changed. */
  empty_diff_calls: z._default(z.boolean(), true),
  /** Profile property sent as the member's `email` (Mixpanel: `$email`). */
  email_property: z._default(nonEmpty, "$email"),
  /** Renames of exported properties as member keys: profile property → key, e.g. {"plan": "tier"}. */
  member_properties: z._default(nameTable, {}),
  allow_private_network: allowPrivateNetwork,
});

const brevoDestinationSchema = z.strictObject({
  type: z.literal("brevo"),
  id: destinationId,
  list_id: z.number().check(z.int(), z.positive()),
  /** Mixpanel profile property → Brevo attribute (UPPERCASE), e.g. {"$first_name": "FIRSTNAME"}. */
  attributes: z._default(z.record(nonEmpty, z.string().check(z.regex(/^[A-Z0-9_]+$/, "Brevo attribute names are UPPERCASE"))), {
    $first_name: "FIRSTNAME",
    $last_name: "LASTNAME",
  }),
  /** Secret JSON `{"api_key": "xkeysib-..."}`. */
  api_key_secret: secretName,
  base_url: z._default(nonEmpty, "https://api.brevo.com/v3"),
  /** Profile property holding the contact's email (default `$email`). */
  email_property: z._default(nonEmpty, "$email"),
  allow_private_network: allowPrivateNetwork,
});

const brazeDestinationSchema = z.strictObject({
  type: z.literal("braze"),
  id: destinationId,
  /** Instance REST endpoint, e.g. https://rest.iad-01.braze.com */
  rest_endpoint: nonEmpty,
  /** Array custom attribute the cohort value is added to / removed from. */
  attribute: z._default(nonEmpty, "mixpanel_cohorts"),
  /** Value put in the array; default the Mixpanel cohort name. */
  value: z.optional(nonEmpty),
  /** Profile property holding the Braze external_id; default the Mixpanel distinct_id. */
  external_id_property: z.optional(nonEmpty),
  /** Sent explicitly on every attribute object (Braze's default is unverified). */
  update_existing_only: z._default(z.boolean(), true),
  /** Secret JSON `{"api_key": "..."}` (REST key with users.track). */
  api_key_secret: secretName,
  /** Profile property → Braze custom attribute, sent with the membership when a member is added. */
  attributes: z._default(nameTable, {}),
  /**
   * Elements the Braze workspace keeps in an array attribute (Braze: 25 by default, settable up
   * to 100). A user whose `attribute` would hold more cohort values than this is reported
   * (run report and the BrazeArrayOverflow metric), since Braze would silently drop the excess.
   */
  array_length_max: z._default(z.number().check(z.int(), z.gte(1), z.lte(100)), 25),
  allow_private_network: allowPrivateNetwork,
});

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
  return z.discriminatedUnion("type", [webhookDestinationSchema, brevoDestinationSchema, brazeDestinationSchema]).check(
    z.superRefine((destination, ctx) => {
      const { key, url } = destinationEndpoint(destination);
      checkUrl(url, key, destination.allow_private_network, rules, ctx);
    }),
  );
}

function cohortSyncSchemaFor(rules: DestinationNetworkRules) {
  const destination = destinationSchemaFor(rules);
  const syncSchema = z
    .strictObject({
      id: z.string().check(z.regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, "must be lowercase letters, digits, - or _ (used in S3 keys)")),
      cohort_id: z.number().check(z.int(), z.positive()),
      /** One destination… */
      destination: z.optional(destination),
      /**
       * …or several (each with an `id`): the cohort is queried once per run and every
       * destination keeps its own snapshot, ledger and health (a "lane" per destination).
       */
      destinations: z.optional(z.array(destination).check(z.minLength(1), z.maxLength(10))),
      /** Extra profile properties exported (webhook: extra member keys; Brevo: needs a mapping). */
      properties: z._default(z.array(nonEmpty), []),
      mode: z._default(z.enum(["diff", "full"]), "diff"),
      schedule: z._default(
        z.string().check(
          z.refine((value) => value === ONCE || (rateToMs(value) ?? 0) > 0, {
            message: 'must be "once" or an interval like "rate(30 minutes)", "rate(2 hours)" or "rate(7 days)"',
          }),
        ),
        "rate(30 minutes)",
      ),
      /** Periodic full `members` resync even when a snapshot is fresh; unset = never (only the window below). */
      full_resync_every: z.optional(rateExpression),
      /** A snapshot older than this forces a full sync (Mixpanel: 3 days). */
      resync_window: z._default(rateExpression, "rate(3 days)"),
      /** Mixpanel's /engage default (true) also returns ids without a profile (no $email). */
      include_all_users: z._default(z.boolean(), true),
      enabled: z._default(z.boolean(), true),
      /**
       * Mass-removal guard: a run that would remove more than this fraction of the
       * last delivered snapshot is held (sync unhealthy) until a forced full sync or
       * the next run confirms it. 1 disables the guard.
       */
      max_remove_fraction: z._default(z.number().check(z.gte(0), z.lte(1)), 0.5),
    })
    .check(
      z.superRefine((sync, ctx) => {
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
      }),
    );
  return z.pipe(
    syncSchema,
    z.transform(({ destination, destinations, ...sync }: z.output<typeof syncSchema>) => {
      // One lane per destination; `group` is the configured sync id (forcing it forces every lane).
      if (destinations) {
        return destinations.map((lane) => ({ ...sync, id: `${sync.id}.${lane.id ?? ""}`, group: sync.id, destination: lane }));
      }
      return destination ? [{ ...sync, group: sync.id, destination }] : [];
    }),
  );
}

export function cohortSyncsSchemaFor(rules: DestinationNetworkRules) {
  const syncs = z.array(cohortSyncSchemaFor(rules)).check(
    z.superRefine((lanesPerSync, ctx) => {
      const seen = new Set<string>();
      lanesPerSync.forEach((lanes, index) => {
        const group = lanes[0]?.group ?? "";
        if (seen.has(group)) {
          ctx.addIssue({ code: "custom", path: [index, "id"], message: `duplicate sync id "${group}"` });
        }
        seen.add(group);
      });
    }),
  );
  return z.pipe(
    syncs,
    z.transform((lanesPerSync: z.output<typeof syncs>) => lanesPerSync.flat()),
  );
}

/** The schema for a deployed stage; the local stage uses cohortSyncsSchemaFor({ localStage: true }). */
export const cohortSyncsSchema = cohortSyncsSchemaFor(DEPLOYED_STAGE_RULES);

/** One lane: a sync with one destination (a fan-out sync becomes one lane per destination). */
export type CohortSync = z.output<typeof cohortSyncsSchema>[number];
export type Destination = z.infer<ReturnType<typeof destinationSchemaFor>>;
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
