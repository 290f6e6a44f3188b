import * as z from "../util/zod.js";

/**
 * The `brevo` block of the stage config (docs/brevo.md): which record kinds the
 * Mixpanel → Brevo connector forwards and how they are named. Every object is
 * `.strict()` so a misspelt key is named in the error, and every name is checked
 * against Brevo's own rules here, at build and cold start, instead of at Brevo
 * (docs/vendors/brevo-connector.md §1, §2).
 */

/** Brevo event names and event property keys: ≤ 255 characters of `A–Z a–z 0–9 - _` (§1). */
export const BREVO_NAME = /^[A-Za-z0-9_-]{1,255}$/;
/** Contact attribute names are written in UPPERCASE (§2); we also keep them to identifier characters. */
export const BREVO_ATTRIBUTE = /^[A-Z][A-Z0-9_]{0,254}$/;
/** The one `property_mapping` target that is not an attribute: the contact's email (§2 `POST /v3/contacts`). */
export const CONTACT_EMAIL_TARGET = "email";

const nonProto = (what: string) =>
  z.string().check(
    z.minLength(1),
    z.refine((name) => name !== "__proto__", `"__proto__" is not a usable ${what}`),
  );

/** Same guard as lib/config/mapping.ts: a "__proto__" key would be dropped by z.record without a trace. */
function table<V extends z.ZodMiniType<string, string>>(value: V) {
  return z._default(
    z.pipe(
      z.custom<unknown>((input) => input === null || typeof input !== "object" || !Object.hasOwn(input, "__proto__"), {
        error: '"__proto__" cannot be mapped',
      }),
      z.record(nonProto("name"), value),
    ),
    {},
  );
}

const brevoEventName = z.string().check(
  z.regex(BREVO_NAME, {
    error: (issue) => `${JSON.stringify(issue.input)} is not a valid Brevo event name (1–255 characters of A–Z a–z 0–9 - _)`,
  }),
);

const attributeTarget = z.string().check(
  z.refine((name) => name === CONTACT_EMAIL_TARGET || BREVO_ATTRIBUTE.test(name), {
    error: (issue) => `${JSON.stringify(issue.input)} must be "email" or an UPPERCASE Brevo contact attribute (A–Z, 0–9, _)`,
  }),
);

/** Mixpanel property names that identify a contact; `distinct_id` means the record's distinct id. */
const identifierSource = nonProto("property name");

export const brevoIdentifiersSchema = z
  .strictObject({
    /** Property whose value becomes the contact's `ext_id` (the stable key, §2 "Identity mapping"). */
    ext_id: z.optional(identifierSource),
    email_id: z.optional(identifierSource),
    phone_id: z.optional(identifierSource),
  })
  .check(
    z.refine((ids) => ids.ext_id !== undefined || ids.email_id !== undefined || ids.phone_id !== undefined, {
      error: "at least one of ext_id, email_id, phone_id is required",
    }),
  );

export const brevoSyncSchema = z.strictObject({
  events: z._default(z.boolean(), false),
  profiles: z._default(z.boolean(), false),
  groups: z._default(z.boolean(), false),
});

/** Brevo company attribute internal names (§3 "Other rules"). */
const companyAttribute = z
  .string()
  .check(z.regex(/^[a-z][a-z0-9_]{0,99}$/, "must be a Brevo company attribute internal name (lowercase a–z, 0–9, _)"));

export const brevoCompaniesSchema = z.strictObject({
  /**
   * Internal name of the custom company attribute holding "<group key>:<group id>", created once in
   * Brevo (§3 "Finding a company by a Mixpanel key"); how a company is found again on later updates.
   */
  id_attribute: z._default(companyAttribute, "mixpanel_group"),
  /** Group property that names the company; the group id when absent. */
  name_property: z._default(nonProto("property name"), "$name"),
  /**
   * Group keys whose profile property links the contact to the company: a profile `$set` of
   * `company_id: "acme"` (Mixpanel's group analytics convention: the property is named after the
   * group key) links the contact to the company of group company_id/acme, when that company exists.
   */
  group_keys: z._default(z.array(nonProto("group key")), []),
  /** Group properties → company attribute internal names (lowercase, §3 "Other rules"). */
  property_mapping: table(companyAttribute),
});

export const brevoConfigSchema = z
  .strictObject({
    /** Secrets Manager secret (JSON `{"api_key": "xkeysib-…"}`); name only, never the key. */
    api_key_secret: z.string().check(z.minLength(1)),
    sync: z._default(brevoSyncSchema, { events: false, profiles: false, groups: false }),
    identifiers: z._default(brevoIdentifiersSchema, { ext_id: "distinct_id" }),
    /** Mixpanel event name (after the stage's own event_mapping) → Brevo event name. */
    event_mapping: table(brevoEventName),
    /** Forward events missing from event_mapping under a name made valid by `brevoEventNameFor`. */
    forward_unmapped_events: z._default(z.boolean(), false),
    /** Mixpanel profile property (after the stage's property_mapping) → "email" or an UPPERCASE contact attribute. */
    property_mapping: table(attributeTarget),
    lists: z._default(
      z.strictObject({
        /** Every contact the connector upserts is also added to this list. */
        all_users: z.optional(z.number().check(z.int(), z.positive())),
      }),
      {},
    ),
    companies: z._default(brevoCompaniesSchema, { id_attribute: "mixpanel_group", name_property: "$name", group_keys: [], property_mapping: {} }),
  })
  .check(
    z.superRefine((config, ctx) => {
      const targets = new Map<string, string>();
      for (const [property, attribute] of Object.entries(config.property_mapping)) {
        const earlier = targets.get(attribute);
        if (earlier !== undefined) {
          ctx.addIssue({ code: "custom", path: ["property_mapping", property], message: `maps to ${attribute}, which ${earlier} already maps to` });
        }
        targets.set(attribute, property);
      }
    }),
  );

export type BrevoConfig = z.infer<typeof brevoConfigSchema>;
export type BrevoSync = z.infer<typeof brevoSyncSchema>;
