import * as z from "../util/zod.js";
import { BRAZE_EVENT_TYPES, normalizeBrazeEventType } from "../vocabulary/braze-labels.js";

/**
 * Mapping keys of the stage config: event renames, profile property
 * renames, the Braze event allow-list, the ID-merge mode and Adobe settings.
 * Every object is `.strict()` so a misspelt key is named in the error, like the
 * stage schema it is merged into (lib/config/stage.ts). Documented in README
 * "Configuration keys".
 */

/**
 * Simplified ID Merge (Mixpanel's default since April 2024) links identities through
 * `$device_id`/`$user_id` on ordinary events and ignores `$identify`/`$create_alias`/`$merge`;
 * Original ID Merge uses those identity events (docs/vendors/mixpanel-api.md §7).
 */
export const identityModeSchema = z.enum(["simplified", "original"]);
export type IdentityMode = z.infer<typeof identityModeSchema>;

const brazeEventTypeName = z.string().check(
  z.refine((name) => normalizeBrazeEventType(name) !== undefined, {
    error: (issue) =>
      `unknown Braze event type ${JSON.stringify(issue.input)} (expected one of the ${BRAZE_EVENT_TYPES.length} types in lib/vocabulary/braze-labels.ts, e.g. "users.messages.email.Send")`,
  }),
);

export const brazeConfigSchema = z.strictObject({
  /**
   * Which Braze event types to forward, like the event picker in Braze's own connector:
   * "all" (default) or a list. Legacy underscore names are accepted and normalised.
   */
  event_types: z._default(z.union([z.literal("all"), z.array(brazeEventTypeName).check(z.minLength(1))]), "all"),
});

export const adobeConfigSchema = z.strictObject({
  /**
   * When set, Adobe events whose `properties.token` differs are rejected (`token_mismatch`);
   * when unset the token is ignored. It is never forwarded (docs/vendors/adobe-forwarding.md §5).
   */
  project_token: z.optional(z.string().check(z.minLength(1))),
});

/**
 * A rename table. "__proto__" is refused on either side: as a key, zod's record parse would drop
 * it (the rename would silently never apply); as a new name, it would put a property the source
 * mappers refuse on input (`invalid_property_name`, lib/sources/property-names.ts) into a record.
 */
const renameTableSchema = z._default(
  z.pipe(
    z.custom<unknown>((table) => table === null || typeof table !== "object" || !Object.hasOwn(table, "__proto__"), {
      error: '"__proto__" cannot be renamed',
    }),
    z.record(
      z.string().check(z.minLength(1)),
      z.string().check(
        z.minLength(1),
        z.refine((name) => name !== "__proto__", '"__proto__" is not a usable name'),
      ),
    ),
  ),
  {},
);

export const mappingConfigSchema = z.object({
  /** Event renames applied to every source after its own naming, e.g. {"Sign Up": "customer_created"}. */
  event_mapping: renameTableSchema,
  /** Profile property renames applied to the keys inside every /engage operation, e.g. {"email": "$email"}. */
  property_mapping: renameTableSchema,
  braze: z._default(brazeConfigSchema, { event_types: "all" }),
  identity_mode: z._default(identityModeSchema, "simplified"),
  adobe: z._default(adobeConfigSchema, {}),
});

export type MappingConfig = z.infer<typeof mappingConfigSchema>;
