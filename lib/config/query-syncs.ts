import * as z from "../util/zod.js";
import { destinationUrlProblem } from "../util/address-policy.js";
import { BREVO_ATTRIBUTE, CONTACT_EMAIL_TARGET } from "./brevo.js";
import { DEPLOYED_STAGE_RULES, type DestinationNetworkRules, ONCE, rateToMs } from "./cohort-syncs.js";

/**
 * Query extracts (`query_syncs`): a Mixpanel Engage query (or a JQL script) run on a schedule,
 * each result row keyed by one property and its mapped values sent to Brevo contact attributes,
 * a signed webhook or Braze attributes. docs/configuration.md "query_syncs" lists every key;
 * docs/vendors/mixpanel-api.md "Query extracts" the vendor limits.
 */

const secretName = z
  .string()
  .check(z.minLength(1), z.maxLength(512), z.regex(/^[A-Za-z0-9/_+=.@-]+$/, "must be a Secrets Manager secret name (letters, digits, /_+=.@-)"));
const nonEmpty = z.string().check(z.minLength(1), z.refine((name) => name !== "__proto__", '"__proto__" is not a usable name'));

/**
 * EventBridge cron: six fields `minutes hours day-of-month month day-of-week year`
 * (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-scheduled-rule-pattern.html).
 * Supported here: `*`, `?`, numbers, `a-b`, `a,b`, `*\/n` and `a/n`; names (MON, JAN), `L`, `W`
 * and `#` are refused so a schedule never silently means something else. Times are UTC.
 */
export interface CronSchedule {
  readonly minutes: ReadonlySet<number>;
  readonly hours: ReadonlySet<number>;
  readonly daysOfMonth: ReadonlySet<number> | "any";
  readonly months: ReadonlySet<number>;
  /** 1 = Sunday … 7 = Saturday, as EventBridge counts. */
  readonly daysOfWeek: ReadonlySet<number> | "any";
  readonly years: ReadonlySet<number> | "any";
}

const CRON = /^cron\(([^)]*)\)$/;

function cronField(text: string, min: number, max: number): Set<number> | "any" | undefined {
  if (text === "*" || text === "?") return "any";
  const values = new Set<number>();
  for (const part of text.split(",")) {
    const match = /^(\*|\d+)(?:-(\d+))?(?:\/(\d+))?$/.exec(part);
    if (!match) return undefined;
    const from = match[1] === "*" ? min : Number(match[1]);
    const to = match[2] !== undefined ? Number(match[2]) : match[1] === "*" || match[3] !== undefined ? max : from;
    const step = match[3] !== undefined ? Number(match[3]) : 1;
    if (from < min || to > max || from > to || step < 1) return undefined;
    for (let value = from; value <= to; value += step) values.add(value);
  }
  return values;
}

const all = (min: number, max: number) => new Set(Array.from({ length: max - min + 1 }, (_, i) => min + i));

/** `cron(0 6 * * ? *)` → its fields; undefined when it is not a supported EventBridge cron expression. */
export function parseCron(expression: string): CronSchedule | undefined {
  const match = CRON.exec(expression);
  if (!match) return undefined;
  const fields = (match[1] ?? "").trim().split(/\s+/);
  if (fields.length !== 6) return undefined;
  const [mi, ho, dom, mo, dow, yr] = fields as [string, string, string, string, string, string];
  // EventBridge: one of day-of-month and day-of-week must be "?".
  if ((dom === "?") === (dow === "?")) return undefined;
  const minutes = cronField(mi, 0, 59);
  const hours = cronField(ho, 0, 23);
  const daysOfMonth = cronField(dom, 1, 31);
  const months = cronField(mo, 1, 12);
  const daysOfWeek = cronField(dow, 1, 7);
  const years = cronField(yr, 1970, 2199);
  if (!minutes || !hours || !daysOfMonth || !months || !daysOfWeek || !years) return undefined;
  return {
    minutes: minutes === "any" ? all(0, 59) : minutes,
    hours: hours === "any" ? all(0, 23) : hours,
    daysOfMonth,
    months: months === "any" ? all(1, 12) : months,
    daysOfWeek,
    years,
  };
}

/** `"once"`, `rate(…)` (the cohort syncs' parser) or `cron(…)`. */
export const querySchedule = z.string().check(
  z.refine((value) => value === ONCE || (rateToMs(value) ?? 0) > 0 || parseCron(value) !== undefined, {
    message: 'must be "once", an interval like "rate(1 hour)" or an EventBridge cron like "cron(0 6 * * ? *)" (UTC)',
  }),
);

const profilesSource = z.strictObject({
  type: z.literal("profiles"),
  /** Engage Query API `where` expression (Mixpanel's expression language); absent = every profile. */
  where: z.optional(z.string().check(z.minLength(1), z.maxLength(10_000))),
  /** Profile properties to read (`output_properties`). */
  output_properties: z.array(nonEmpty).check(z.minLength(1), z.maxLength(255)),
});

const jqlSource = z.strictObject({
  type: z.literal("jql"),
  /** A script shipped in the bundle under queries/ (JQL is in maintenance mode: prefer `profiles`). */
  script_file: z.string().check(z.regex(/^queries\/[a-z0-9][a-z0-9_-]{0,62}\.js$/, "must name a file under queries/, like queries/plan-by-user.js")),
  /** JQL `params`: handed to the script as `params`. */
  params: z._default(z.record(z.string(), z.unknown()), {}),
});

/** Result field → Brevo attribute (UPPERCASE) or "email". */
const brevoAttributesDestination = z.strictObject({
  type: z.literal("brevo_attributes"),
  attributes: z.record(
    nonEmpty,
    z.string().check(
      z.refine((name) => name === CONTACT_EMAIL_TARGET || BREVO_ATTRIBUTE.test(name), {
        error: (issue) => `${JSON.stringify(issue.input)} must be "email" or an UPPERCASE Brevo contact attribute (A–Z, 0–9, _)`,
      }),
    ),
  ),
});

const webhookDestination = z.strictObject({
  type: z.literal("webhook"),
  url: nonEmpty,
  /** Secret JSON `{"secret": "..."}`: key of the HMAC-SHA256 signature header (the cohort webhook's). */
  signing_secret: secretName,
  basic_auth_secret: z.optional(secretName),
  /** Result field → key in each sent row. */
  attributes: z.record(nonEmpty, nonEmpty),
  allow_private_network: z._default(z.boolean(), false),
});

const brazeDestination = z.strictObject({
  type: z.literal("braze_attributes"),
  rest_endpoint: nonEmpty,
  /** Secret JSON `{"api_key": "..."}` (REST key with users.track). */
  api_key_secret: secretName,
  /** Result field → Braze custom attribute; the row's key is the external_id. */
  attributes: z.record(nonEmpty, nonEmpty),
  update_existing_only: z._default(z.boolean(), true),
  allow_private_network: z._default(z.boolean(), false),
});

function querySyncSchemaFor(rules: DestinationNetworkRules) {
  return z
    .strictObject({
      id: z.string().check(z.regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, "must be lowercase letters, digits, - or _ (used in S3 keys)")),
      enabled: z._default(z.boolean(), true),
      schedule: z._default(querySchedule, "rate(1 day)"),
      source: z.discriminatedUnion("type", [profilesSource, jqlSource]),
      /** The result field that names the person (Brevo identity through `brevo.identifiers`). */
      key: z._default(nonEmpty, "distinct_id"),
      destination: z.discriminatedUnion("type", [brevoAttributesDestination, webhookDestination, brazeDestination]),
      /** `changed`: only rows whose mapped values changed since the last delivered run; `all`: every row. */
      send: z._default(z.enum(["changed", "all"]), "changed"),
      /** Rows one run reads at most (memory bound); a longer result fails the run, naming this key. */
      max_rows: z._default(z.number().check(z.int(), z.positive(), z.lte(1_000_000)), 100_000),
    })
    .check(
      z.superRefine((sync, ctx) => {
        const destination = sync.destination;
        if (Object.keys(destination.attributes).length === 0) {
          ctx.addIssue({ code: "custom", path: ["destination", "attributes"], message: "map at least one result field" });
        }
        if (destination.type === "webhook" || destination.type === "braze_attributes") {
          const key = destination.type === "webhook" ? "url" : "rest_endpoint";
          const url = destination.type === "webhook" ? destination.url : destination.rest_endpoint;
          const problem = destinationUrlProblem(url, key, { allowPrivate: destination.allow_private_network, localStage: rules.localStage });
          if (problem) ctx.addIssue({ code: "custom", path: ["destination", key], message: problem });
        }
        if (sync.source.type === "profiles") {
          const read = new Set(["distinct_id", "$distinct_id", ...sync.source.output_properties]);
          for (const field of [sync.key, ...Object.keys(destination.attributes)]) {
            if (!read.has(field)) {
              ctx.addIssue({ code: "custom", path: ["source", "output_properties"], message: `"${field}" is used but not in output_properties` });
            }
          }
        }
      }),
    );
}

export function querySyncsSchemaFor(rules: DestinationNetworkRules) {
  return z.array(querySyncSchemaFor(rules)).check(
    z.superRefine((syncs, ctx) => {
      const seen = new Set<string>();
      syncs.forEach((sync, index) => {
        if (seen.has(sync.id)) ctx.addIssue({ code: "custom", path: [index, "id"], message: `duplicate query sync id "${sync.id}"` });
        seen.add(sync.id);
      });
    }),
  );
}

export const querySyncsSchema = querySyncsSchemaFor(DEPLOYED_STAGE_RULES);
export type QuerySync = z.output<typeof querySyncsSchema>[number];
export type QueryDestination = QuerySync["destination"];
