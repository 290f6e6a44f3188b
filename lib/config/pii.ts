import * as z from "../util/zod.js";

/**
 * The per-stage `pii` setting (config/<stage>.json, docs/pii.md): what happens to
 * properties that carry personal data before anything is queued or stored.
 *   "pii": {"properties": {"$email": "hash", "phone": "drop"}, "hash_key_secret": "mixpanel-relay/prod/pii-hash-key"}
 * `hash` = HMAC-SHA256 hex with the stage's key (same input, same output, so joins still work);
 * `drop` = the property is removed.
 */
export const piiActionSchema = z.enum(["drop", "hash"]);
export type PiiAction = z.infer<typeof piiActionSchema>;

/** Mixpanel needs these unchanged on every record (docs/vendors/mixpanel-api.md §4, §5, §6): no rule may touch them. */
export const PII_UNTOUCHABLE = new Set(["time", "$insert_id", "$group_key", "$token", "token"]);
/** Identity fields may be hashed (still an id, still joinable) but never dropped: records without them are refused. */
export const PII_NEVER_DROPPED = new Set(["distinct_id", "$distinct_id", "$group_id"]);

export const piiConfigSchema = z
  .strictObject({
    /** Property name → action. Matched at any depth of event properties, profile/group operations and cohort members. */
    properties: z._default(z.record(z.string().check(z.minLength(1)), piiActionSchema), {}),
    /** Secrets Manager secret `{"key": "<at least 32 characters>"}` for `hash`; unset = env PII_HASH_KEY (local). */
    hash_key_secret: z.optional(z.string().check(z.minLength(1))),
  })
  .check(
    z.superRefine((pii, context) => {
      for (const [name, action] of Object.entries(pii.properties)) {
        if (PII_UNTOUCHABLE.has(name)) {
          context.addIssue({ code: "custom", path: ["properties", name], message: `${name} cannot be dropped or hashed: Mixpanel needs it as sent` });
        } else if (action === "drop" && PII_NEVER_DROPPED.has(name)) {
          context.addIssue({ code: "custom", path: ["properties", name], message: `${name} can be hashed but not dropped: Mixpanel refuses records without it` });
        }
      }
    }),
  );

export type PiiConfig = z.infer<typeof piiConfigSchema>;

/** The hash key secret's shape. */
export const piiKeySecretSchema = z.object({ key: z.string().check(z.minLength(32)) });

/** Whether the setting asks for any hashing (and therefore needs a key). */
export function needsHashKey(config: PiiConfig | undefined): boolean {
  return config !== undefined && Object.values(config.properties).includes("hash");
}
